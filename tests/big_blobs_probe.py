"""One master run for the memory tests and benchmarks/bench_big_blobs.py: peak RSS figures as JSON.

    python tests/big_blobs_probe.py STORAGE_ROOT KEY_DIR SIZE_MB COUNT KIND [SHARED_MB]

Runs COUNT elements on the local backend, each returning SIZE_MB of KIND (bytes: os.urandom,
numpy: a uint8 array), optionally with a shared input of SHARED_MB bytes. Prints the master's peak
RSS once every result has arrived (the end-of-attempt checks), the largest element process's peak
RSS (RUSAGE_CHILDREN: the runner processes the master waited for), and the master's peak RSS after
loading one result. Peaks come from getrusage, so nothing is sampled and nothing is missed.
"""

import json
import os
import resource
import sys
import time


def mb(usage):
    return round(usage.ru_maxrss / 1024.0, 1)


def make(i, size=0, kind="bytes", blob=None):
    import resource as r

    if kind == "numpy":
        import numpy

        value = numpy.random.default_rng(i).integers(0, 256, size, dtype=numpy.uint8)
    else:
        value = os.urandom(size)
    # What the element itself held before its result was written: shared input included.
    print("kubeface-probe element-before-write-mb=%.1f" % (r.getrusage(r.RUSAGE_SELF).ru_maxrss / 1024.0))
    return value


def main(argv):
    root, key_dir, size_mb, count, kind = argv[:5]
    shared_mb = int(argv[5]) if len(argv) > 5 else 0
    from luigi_kubeface import Client

    size = int(float(size_mb) * (1 << 20))
    shared = {"size": size, "kind": kind}
    if shared_mb:
        shared["blob"] = os.urandom(shared_mb << 20)
    started = time.perf_counter()
    client = Client(storage_root=root, key_dir=key_dir, poll_interval=0.1, max_in_flight=2, retries=0)
    results = client.map(make, range(int(count)), job_id="big-blobs", shared=shared)
    ran = time.perf_counter() - started
    figures = {"master_checking_mb": mb(resource.getrusage(resource.RUSAGE_SELF)),
               "element_mb": mb(resource.getrusage(resource.RUSAGE_CHILDREN)), "run_s": round(ran, 1)}
    del shared
    started = time.perf_counter()
    value = results[0]
    figures["load_s"] = round(time.perf_counter() - started, 1)
    assert len(value) == size, (len(value), size)
    figures["master_after_load_mb"] = mb(resource.getrusage(resource.RUSAGE_SELF))
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
