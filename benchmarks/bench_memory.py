"""Goal 4: the master's peak memory (RSS) with 50,000 elements finished, through `luigi` and through Client.

Each run is its own process; its peak RSS is read from the kernel when it ends (wait4). The
`instant` backend runs attempts in the master, so the figure includes every element's input, result
and outcome record passing through it. Peer: stock Luigi, one plain task per element, at a size it
finishes (its peak RSS and the per-element slope).

    python benchmarks/bench_memory.py [--n 50000] [--peer-n 2000]
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

from common import luigi_env, run_luigi, scratch, table

CLIENT_RUN = """
import resource, sys, time
import bench_pipelines
from luigi_kubeface import Client
n, root = int(sys.argv[1]), sys.argv[2]
results = Client(backend="instant", storage_root=root, poll_interval=0.05).map(bench_pipelines.trivial, range(n))
assert len(results) == n
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
"""


def client_run(n):
    root = scratch("bench-mem-client-")
    try:
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CLIENT_RUN, str(n), root],
            env=luigi_env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return time.perf_counter() - started, float(out.split()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def luigi_run(task, n):
    work = scratch("bench-mem-luigi-")
    try:
        args = (
            [
                "TrivialMap",
                "--n",
                str(n),
                "--kubeface-backend",
                "instant",
                "--kubeface-storage-root",
                os.path.join(work, "storage"),
                "--kubeface-poll-interval",
                "0.05",
            ]
            if task == "ours"
            else ["StockMap", "--n", str(n), "--out", os.path.join(work, "out")]
        )
        seconds, rss, code, tail = run_luigi(["--module", "bench_pipelines"] + args + ["--local-scheduler"], cwd=work)
        if code != 0:
            raise SystemExit("luigi run failed:\n" + tail)
        return seconds, rss
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--peer-n", type=int, default=2000)
    args = parser.parse_args()
    _, base_ours = luigi_run("ours", 1)
    _, base_peer = luigi_run("stock", 1)
    rows = []
    seconds, rss = luigi_run("ours", args.n)
    rows.append(
        [
            "luigi TrivialMap (local scheduler), ours",
            args.n,
            "%.0f" % seconds,
            "%.0f" % rss,
            "%.1f" % (1024 * (rss - base_ours) / args.n),
        ]
    )
    seconds, rss = client_run(args.n)
    rows.append(["Client.map, ours", args.n, "%.0f" % seconds, "%.0f" % rss, "-"])
    seconds, rss = luigi_run("stock", args.peer_n)
    rows.append(
        [
            "luigi StockMap (local scheduler), stock Luigi",
            args.peer_n,
            "%.0f" % seconds,
            "%.0f" % rss,
            "%.1f" % (1024 * (rss - base_peer) / args.peer_n),
        ]
    )
    print("1-element luigi runs: ours %.0f MB, stock %.0f MB" % (base_ours, base_peer))
    table(["run", "elements", "s", "peak RSS MB", "KB per element above a 1-element run"], rows)


if __name__ == "__main__":
    main()
