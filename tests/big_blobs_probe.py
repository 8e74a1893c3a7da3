"""One master run for the memory tests and benchmarks/bench_big_blobs.py: peak RSS figures as JSON.

    python tests/big_blobs_probe.py STORAGE_ROOT KEY_DIR SIZE_MB COUNT KIND [SHARED_MB]

Runs COUNT elements on the local backend, each returning SIZE_MB of KIND (bytes: os.urandom,
numpy: a uint8 array), optionally with a shared input of SHARED_MB bytes. Prints the master's peak
RSS once every result has arrived (the end-of-attempt checks), the largest element process's peak
RSS (each runner writes its own at exit, after its result is written), and the master's peak RSS
after loading one result. Peaks are the kernel's VmHWM of each process (since its exec: unlike
getrusage's ru_maxrss, not inherited from a larger parent), so nothing is sampled or missed.
"""

import json
import os
import sys
import time


def peak_mb():
    """This process's peak RSS since exec (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        return round(int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024.0, 1)


def make(i, size=0, kind="bytes", report="", blob=None):
    import atexit

    def write_peak():  # at the runner's exit: after its result was pickled and written
        with open("/proc/self/status") as f:
            peak = next(line for line in f if line.startswith("VmHWM:")).split()[1]
        with open(os.path.join(report, "element-%d" % os.getpid()), "w") as f:
            f.write(peak)

    atexit.register(write_peak)
    if kind == "numpy":
        import numpy

        value = numpy.random.default_rng(i).integers(0, 256, size, dtype=numpy.uint8)
    else:
        value = os.urandom(size)
    return value


def main(argv):
    root, key_dir, size_mb, count, kind = argv[:5]
    shared_mb = int(argv[5]) if len(argv) > 5 else 0
    from luigi_kubeface import Client

    size = int(float(size_mb) * (1 << 20))
    report = os.path.abspath("element-peaks")
    os.makedirs(report, exist_ok=True)
    shared = {"size": size, "kind": kind, "report": report}
    if shared_mb:
        shared["blob"] = os.urandom(shared_mb << 20)
    started = time.perf_counter()
    client = Client(storage_root=root, key_dir=key_dir, poll_interval=0.1, max_in_flight=2, retries=0)
    results = client.map(make, range(int(count)), job_id="big-blobs", shared=shared)
    ran = time.perf_counter() - started
    peaks = [int(open(os.path.join(report, name)).read()) / 1024.0 for name in os.listdir(report)]
    assert len(peaks) == int(count), peaks
    figures = {"master_checking_mb": peak_mb(), "element_mb": round(max(peaks), 1), "run_s": round(ran, 1)}
    del shared
    started = time.perf_counter()
    value = results[0]
    figures["load_s"] = round(time.perf_counter() - started, 1)
    assert len(value) == size, (len(value), size)
    figures["master_after_load_mb"] = peak_mb()
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
