"""Goal 1 (and the master's memory, goal 4): a map task of N trivial elements through `luigi` and luigid.

Ours, two ways (bench_pipelines.py), each attempt ending at once:
- master only: `TrivialMap(n=N)` on the `results-only` backend, which files each result and record as
  the runner would without running the runner's code: Luigi, the engine and its storage reads and
  writes, nothing else;
- with the runner: the `instant` backend, which runs the task runner's own code in the master for each
  attempt (fetch, verify, unpickle, run, sign, write); the difference is the runner's cost.
Peer: stock Luigi, one plain `luigi.Task` per element (`StockMap`), at the sizes it finishes within
minutes. All through a fresh luigid on 127.0.0.1 for each run, side by side in the same run. Per
element = (time at N - time of a 1-element run) / N; peak RSS is the `luigi` process's.

    python benchmarks/bench_scheduling.py [--sizes 1000,5000,20000] [--runner-sizes ...] [--peer-sizes 1000,5000]
"""

import argparse
import shutil

from common import Luigid, median, run_luigi, scratch, table


def _run_ours(backend, n, luigid):
    work = scratch("bench-sched-")
    try:
        return run_luigi(
            [
                "--module",
                "bench_pipelines",
                "TrivialMap",
                "--n",
                str(n),
                "--kubeface-backend",
                backend,
                "--kubeface-storage-root",
                work + "/storage",
                "--kubeface-key-dir",
                work + "/keys",
                "--kubeface-poll-interval",
                "0.05",
            ]
            + luigid.flags(),
            cwd=work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_master(n, luigid):
    return _run_ours("results-only", n, luigid)


def run_with_runner(n, luigid):
    return _run_ours("instant", n, luigid)


def run_peer(n, luigid):
    work = scratch("bench-stock-")
    try:
        return run_luigi(
            ["--module", "bench_pipelines", "StockMap", "--n", str(n), "--out", work + "/out"] + luigid.flags(),
            cwd=work,
        )
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
            if runner is not run_peer:
                jobs = luigid.api("task_list", {"status": "DONE", "upstream_status": "", "search": "KubefaceJob"})
                message = next(iter(jobs.values())).get("status_message") or ""
                elements = luigid.count("DONE", "KubefaceElement")
                shown = "%d element tasks; job: %s" % (elements, message)
        finally:
            luigid.stop()
    return median(times), rss, shown


def per_element(result, base, n):
    return 1000 * (result[0] - base) / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,20000", help="sizes of the master-only runs")
    parser.add_argument("--runner-sizes", default=None, help="sizes of the runs with the runner (default: --sizes)")
    parser.add_argument("--peer-sizes", default="1000,5000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size up to 1,000 (larger sizes run once)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    runner_sizes = sizes if args.runner_sizes is None else [int(s) for s in args.runner_sizes.split(",") if s]
    peer_sizes = [int(s) for s in args.peer_sizes.split(",") if s]
    modes = [(run_master, sizes), (run_with_runner, runner_sizes), (run_peer, peer_sizes)]

    base = {runner: measure(runner, 1, args.repeat)[0] for runner, _ in modes}
    print(
        "1-element run (Luigi start-up, fixed cost): master only %.2fs, with the runner %.2fs, stock Luigi %.2fs"
        % tuple(base[runner] for runner, _ in modes)
    )
    rows, notes = [], []
    for n in sorted(set(sizes) | set(runner_sizes) | set(peer_sizes)):
        repeat = args.repeat if n <= 1000 else 1
        found = {runner: measure(runner, n, repeat) if n in wanted else None for runner, wanted in modes}
        master, with_runner, peer = (found[runner] for runner, _ in modes)
        row = [n, repeat]
        for result, runner in ((master, run_master), (with_runner, run_with_runner)):
            row += (
                ["%.1f" % result[0], "%.2f" % per_element(result, base[runner], n), "%.0f" % result[1]]
                if result
                else ["-", "-", "-"]
            )
        row.append(
            "%.2f" % (per_element(with_runner, base[run_with_runner], n) - per_element(master, base[run_master], n))
            if master and with_runner
            else "-"
        )
        row += ["%.1f" % peer[0], "%.2f" % per_element(peer, base[run_peer], n)] if peer else ["-", "-"]
        row.append(
            "%.1fx" % (per_element(peer, base[run_peer], n) / per_element(master, base[run_master], n))
            if master and peer
            else "-"
        )
        row.append(((master or with_runner or (None, None, ""))[2] or "").split(";")[0])
        rows.append(row)
        notes.append(
            "n=%d, what luigid shows of the job: %s"
            % (n, ((master or with_runner or (None, None, ""))[2] or "").partition("; job: ")[2] or "-")
        )
        print("n=%d done" % n, flush=True)
    table(
        [
            "elements",
            "runs",
            "master s",
            "master ms/el",
            "master RSS MB",
            "w/ runner s",
            "w/ runner ms/el",
            "w/ runner RSS MB",
            "runner ms/el",
            "stock s",
            "stock ms/el",
            "stock/master (ms/el)",
            "luigid shows",
        ],
        rows,
    )
    print("\n".join(notes))


if __name__ == "__main__":
    main()
