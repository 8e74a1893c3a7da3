"""Goal 1 (and the master's memory, goal 4): a map task of N trivial elements through `luigi` and luigid.

Ours: `TrivialMap(n=N)` with the `instant` backend (each attempt runs the task runner's code inside
the master, at once), so the time is the master's own: Luigi, the engine, the storage writes and the
in-process attempts. Peer: stock Luigi, one plain `luigi.Task` per element (`StockMap`), at the
sizes it finishes within minutes. Both through a fresh luigid on 127.0.0.1 for each run, side by
side in the same run. Per element = (time at N - time of a 1-element run) / N.

    python benchmarks/bench_scheduling.py [--sizes 1000,5000,20000,50000] [--peer-sizes 1000,2000,4000]
"""

import argparse
import shutil

from common import Luigid, median, run_luigi, scratch, table


def run_ours(n, luigid):
    work = scratch("bench-sched-")
    try:
        return run_luigi(["--module", "bench_pipelines", "TrivialMap", "--n", str(n), "--kubeface-backend", "instant",
                          "--kubeface-storage-root", work + "/storage", "--kubeface-poll-interval", "0.05"]
                         + luigid.flags(), cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_peer(n, luigid):
    work = scratch("bench-stock-")
    try:
        return run_luigi(["--module", "bench_pipelines", "StockMap", "--n", str(n), "--out", work + "/out"]
                         + luigid.flags(), cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(runner, n, repeat):
    """Median seconds over `repeat` runs, each against a fresh luigid; plus peak RSS and what luigid shows."""
    times, rss, shown = [], 0.0, None
    for _ in range(repeat):
        luigid = Luigid()
        try:
            seconds, peak, code, tail = runner(n, luigid)
            if code != 0:
                raise SystemExit("run of %s at n=%d failed (exit %d):\n%s" % (runner.__name__, n, code, tail))
            times.append(seconds)
            rss = max(rss, peak)
            if runner is run_ours:
                jobs = luigid.api("task_list", {"status": "DONE", "upstream_status": "", "search": "KubefaceJob"})
                message = next(iter(jobs.values())).get("status_message") or ""
                elements = luigid.count("DONE", "KubefaceElement")
                shown = "%d element tasks; job: %s" % (elements, message)
        finally:
            luigid.stop()
    return median(times), rss, shown


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,4000,5000,20000,50000")
    parser.add_argument("--peer-sizes", default="1000,2000,4000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size up to 1,000 (larger sizes run once)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    peer_sizes = [int(s) for s in args.peer_sizes.split(",") if s]

    base_ours, _, _ = measure(run_ours, 1, args.repeat)
    base_peer, _, _ = measure(run_peer, 1, args.repeat)
    print("1-element run (Luigi start-up, fixed cost): ours %.2fs, stock Luigi %.2fs" % (base_ours, base_peer))
    rows = []
    for n in sorted(set(sizes) | set(peer_sizes)):
        repeat = args.repeat if n <= 1000 else 1
        ours = measure(run_ours, n, repeat) if n in sizes else None
        peer = measure(run_peer, n, repeat) if n in peer_sizes else None
        row = [n, repeat]
        if ours:
            row += ["%.1f" % ours[0], "%.2f" % (1000 * (ours[0] - base_ours) / n), "%.0f" % ours[1]]
        else:
            row += ["-", "-", "-"]
        if peer:
            row += ["%.1f" % peer[0], "%.2f" % (1000 * (peer[0] - base_peer) / n)]
        else:
            row += ["-", "-"]
        row.append("%.1fx" % (peer[0] / ours[0]) if ours and peer else "-")
        row.append(ours[2] if ours else "")
        rows.append(row)
        print("n=%d done" % n, flush=True)
    table(["elements", "runs", "ours s", "ours ms/el", "ours RSS MB", "stock s", "stock ms/el", "stock/ours",
           "luigid shows"], rows)


if __name__ == "__main__":
    main()
