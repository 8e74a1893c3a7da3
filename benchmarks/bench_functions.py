"""The element function of bench_local, and its multiprocessing peer, in a module that imports nothing
heavy: the peer's spawned children re-import their parent's main module, so the peer runs from here.

    python bench_functions.py <n> <slots> <out dir>   (prints the peer's seconds)
"""

import multiprocessing
import multiprocessing.connection
import os
import pickle
import sys
import time


def trivial(x):
    return x * x


def write_result(x, out):
    with open(os.path.join(out, "%d.pkl" % x), "wb") as f:
        pickle.dump(trivial(x), f)


def run_peer(n, slots, out):
    """One spawned Process per element, `slots` at a time; waits on sentinels, so no polling delay."""
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    running = []
    for x in range(n):
        while len(running) >= slots:
            multiprocessing.connection.wait([p.sentinel for p in running])
            for p in [p for p in running if not p.is_alive()]:
                p.join()
                assert p.exitcode == 0
                running.remove(p)
        process = context.Process(target=write_result, args=(x, out))
        process.start()
        running.append(process)
    for p in running:
        p.join()
        assert p.exitcode == 0
    assert len(os.listdir(out)) == n
    return time.perf_counter() - started


if __name__ == "__main__":
    print(run_peer(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
