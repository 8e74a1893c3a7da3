"""Goal 3: slot use and stragglers, on the simulated backend's virtual clock (no real sleeping).

200 slots; each attempt lasts a duration drawn uniformly from 0.5 to 1.5 virtual seconds (median
1), and with probability 5% it straggles: 10x the median. A straggler is a slow attempt (a slow
node), so a backup attempt of the same element draws its own duration. Three runs of the engine
over the same elements: no stragglers (the reference makespan), stragglers without speculation,
stragglers with speculation (default settings: min done 0.5, multiple 3).

Slot use while work remains = busy slot-time / (slots x time until the last element first
launched); overall = the same up to the makespan.

    python benchmarks/bench_slots.py [--n 20000] [--slots 200]
"""

import argparse
import hashlib
import shutil

from common import scratch, table

from luigi_kubeface.backends.simulated import SimulatedBackend
from luigi_kubeface.master.engine import run_job
from luigi_kubeface.job.definition import Job, elements_from_items
from luigi_kubeface.settings import Settings


def trivial(x):
    return x


def draw(spec, straggle):
    """Duration of one attempt, reproducible from its element and attempt number."""
    digest = hashlib.sha256(("%s/%s" % (spec.element, spec.attempt[:3])).encode()).digest()
    uniform = int.from_bytes(digest[:4], "big") / 2**32
    slow = int.from_bytes(digest[4:8], "big") / 2**32 < straggle
    return 10.0 if slow else 0.5 + uniform


def busy_share(timeline, until, slots):
    busy, (last_time, last_running) = 0.0, timeline[0]
    for when, running in timeline[1:]:
        if when > until:
            break
        busy += last_running * (when - last_time)
        last_time, last_running = when, running
    busy += last_running * max(0.0, until - last_time)
    return busy / (slots * until) if until > 0 else float("nan")


def run(n, slots, straggle, speculation, root, min_done, multiple):
    settings = Settings(
        storage_root=root,
        max_in_flight=slots,
        retries=0,
        poll_interval=0.05,
        speculation=speculation,
        speculation_min_done=min_done,
        speculation_multiple=multiple,
    )
    job = Job("slots-%s-%s" % (straggle, speculation), settings.storage_root, trivial, elements_from_items(range(n)))
    job.prepare()
    first_launch = {}

    def duration(spec):
        first_launch.setdefault(spec.element, backend.now)
        return draw(spec, straggle)

    backend = SimulatedBackend(settings, duration)
    report = run_job(job, backend, settings, clock=backend.clock, sleep=backend.sleep)
    assert report.progress.succeeded == n and not report.failures, report.progress.describe()
    assert job.store.finished() == {e.key for e in job.elements}
    makespan = backend.now
    queue_empty = max(first_launch.values())
    stragglers = sum(1 for spec in backend.launched if draw(spec, straggle) >= 10.0)
    return {
        "makespan": makespan,
        "use while work remains": busy_share(backend.timeline, queue_empty, slots),
        "use overall": busy_share(backend.timeline, makespan, slots),
        "attempts": len(backend.launched),
        "straggling attempts": stragglers,
        "backups": report.progress.speculated,
        "cancelled": len(backend.cancelled),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--slots", type=int, default=200)
    parser.add_argument("--min-done", type=float, default=Settings.speculation_min_done)
    parser.add_argument("--multiple", type=float, default=Settings.speculation_multiple)
    args = parser.parse_args()
    print("speculation_min_done=%g speculation_multiple=%g" % (args.min_done, args.multiple))
    root = scratch("bench-slots-")
    try:
        runs = [
            ("no stragglers", 0.0, False),
            ("5% stragglers, no speculation", 0.05, False),
            ("5% stragglers, speculation", 0.05, True),
        ]
        results = [
            (name, run(args.n, args.slots, straggle, spec, root, args.min_done, args.multiple))
            for name, straggle, spec in runs
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    reference = results[0][1]["makespan"]
    table(
        [
            "run",
            "elements",
            "slots",
            "makespan (virtual s)",
            "vs no stragglers",
            "slot use while work remains",
            "slot use overall",
            "attempts",
            "straggling attempts",
            "backups",
            "cancelled",
        ],
        [
            [
                name,
                args.n,
                args.slots,
                "%.1f" % r["makespan"],
                "%.2fx" % (r["makespan"] / reference),
                "%.1f%%" % (100 * r["use while work remains"]),
                "%.1f%%" % (100 * r["use overall"]),
                r["attempts"],
                r["straggling attempts"],
                r["backups"],
                r["cancelled"],
            ]
            for name, r in results
        ],
    )


if __name__ == "__main__":
    main()
