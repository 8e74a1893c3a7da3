"""Goal 6: the local backend against a plain multiprocessing process-per-task run of the same function.

Ours: `Client(max_in_flight=slots).map(trivial, range(N))`: a fresh `python -m luigi_kubeface.runner`
per element (reads the function and input from storage, writes result, log and outcome record).
Peer: `multiprocessing.get_context("spawn")`, one Process per element, `slots` at a time, each
writing its pickled result to a file; the parent waits on the process sentinels (no polling delay).
Spawn, not fork: a fresh interpreter per task is what our runner starts too; the peer runs from
a small module (bench_functions.py) so its children import only that module, as our runner does. Runs alternate, the
table shows medians.

    python benchmarks/bench_local.py [--n 40] [--slots 2] [--repeat 3]
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

from bench_functions import trivial
from common import BENCH, median, scratch, table

from luigi_kubeface import Client
from luigi_kubeface.backends import default_max_in_flight
from luigi_kubeface.settings import Settings


def run_peer(n, slots, out):
    """The peer runs in its own small process (see bench_functions): returns its seconds."""
    output = subprocess.run(
        [sys.executable, os.path.join(BENCH, "bench_functions.py"), str(n), str(slots), out],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(output.split()[-1])


def run_ours(n, slots, root, poll_interval):
    client = Client(storage_root=root, max_in_flight=slots, poll_interval=poll_interval)
    started = time.perf_counter()
    results = client.map(trivial, range(n), job_id="local-%d-%s" % (n, time.time_ns()))
    seconds = time.perf_counter() - started
    assert list(results) == [trivial(x) for x in range(n)]
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--slots", type=int, default=default_max_in_flight("local"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    polls = sorted({Settings.poll_interval, 0.05}, reverse=True)
    times = {("peer", None): []}
    times.update({("ours", p): [] for p in polls})
    for _ in range(args.repeat):
        for poll in polls:
            root = scratch("bench-local-")
            try:
                times[("ours", poll)].append(run_ours(args.n, args.slots, root, poll))
            finally:
                shutil.rmtree(root, ignore_errors=True)
        out = scratch("bench-peer-")
        try:
            times[("peer", None)].append(run_peer(args.n, args.slots, out))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    peer = median(times[("peer", None)])
    rows = [
        [
            "multiprocessing spawn, process per element",
            args.n,
            args.slots,
            "%.2f" % peer,
            "%.0f" % (1000 * peer * args.slots / args.n),
            "1.00x",
        ]
    ]
    for poll in polls:
        ours = median(times[("ours", poll)])
        rows.append(
            [
                "local backend, poll_interval=%g%s" % (poll, " (default)" if poll == Settings.poll_interval else ""),
                args.n,
                args.slots,
                "%.2f" % ours,
                "%.0f" % (1000 * ours * args.slots / args.n),
                "%.2fx" % (ours / peer),
            ]
        )
    table(["run", "elements", "slots", "median s", "ms per element per slot", "vs peer"], rows)


if __name__ == "__main__":
    main()
