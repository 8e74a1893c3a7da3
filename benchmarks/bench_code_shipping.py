"""What shipping the user's code costs when a job is prepared, beside a job prepared without it.

    python3 benchmarks/bench_code_shipping.py [--repeat 7]

For the example pipeline (12 elements) it prints the shipped modules, the archive's size, and the
median time of Job.prepare() with code shipping (ours) beside the same prepare with the code
package stubbed out to nothing (the peer: main before code shipping, which uploaded the function
and inputs only). The figures are the master's: local storage in /dev/shm where it exists.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from luigi_kubeface.job.code import discover as code_discover, install as code_install  # noqa: E402
from luigi_kubeface.job.definition import Job, elements_from_grid  # noqa: E402
from luigi_kubeface.bucket.signing import KeyRing  # noqa: E402


def prepare_once(task, root, ship):
    job = Job(
        "bench", root, task.run_element, elements_from_grid(task.grid()), keys=KeyRing(os.path.join(root, "keys"))
    )
    if not ship:  # the peer: nothing of the user's is analysed or uploaded
        job._code = code_discover.CodePackage({}, (), {}, code_install.sources_digest({}))
        job._build_code = lambda payloads: job._code
    started = time.perf_counter()
    job.prepare()
    return time.perf_counter() - started, job


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from example_pipelines.model_selection import TrainModels

    task = TrainModels()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    times = {True: [], False: []}
    for _ in range(args.repeat):
        for ship in (True, False):  # interleaved, so both see the same machine load
            with tempfile.TemporaryDirectory(dir=base) as root:
                seconds, job = prepare_once(task, root, ship)
                times[ship].append(seconds)
                if ship:
                    package = job.code()
    first = times[True][0]  # the process's first analysis also reads every installed distribution's metadata
    ours, peer = statistics.median(times[True][1:]), statistics.median(times[False][1:])
    print("example pipeline: %d elements, shipped modules: %s" % (len(task.grid()), ", ".join(package.modules)))
    print(
        "shipped code: %d bytes of sources, %d bytes zipped; requirements recorded: %s"
        % (package.size, len(package.archive()), ", ".join("%s==%s" % kv for kv in package.requirements.items()))
    )
    print(
        "Job.prepare() median of %d: %.1f ms with code shipping, %.1f ms without (ratio %.2f, +%.1f ms); "
        "the first in a process (installed distributions read once): %.0f ms"
        % (args.repeat - 1, ours * 1e3, peer * 1e3, ours / peer, (ours - peer) * 1e3, first * 1e3)
    )


if __name__ == "__main__":
    main()
