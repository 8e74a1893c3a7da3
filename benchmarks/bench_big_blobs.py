"""Issue 13: inputs and results of up to 2 GB, streamed, each held in memory once.

Two tables, each with its peer measured in the same run:

1. Local backend, `Client.map` of a function returning SIZE of `os.urandom` bytes (COUNT results):
   the element process's peak RSS, the master's peak RSS while the results arrive (end-of-attempt
   checks) and after `load()` of one result; ours beside another checkout (--before, e.g. main).
2. One NumPy uint8 array of SIZE through fake-gcs-server: ours (pickle protocol 5 out-of-band,
   resumable upload with if_generation_match=0, streamed download, sha256 checked before unpickling)
   beside google-cloud-storage's own upload_from_filename / download_to_filename of the same bytes.

    python benchmarks/bench_big_blobs.py [--sizes 200,1024,2048] [--count 10] [--before PATH-TO-AN-OLDER-CHECKOUT]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

from common import REPO, table

sys.path.insert(0, os.path.join(REPO, "tests"))
from infra.servers import FakeGCS  # noqa: E402

PROBE = os.path.join(REPO, "tests", "big_blobs_probe.py")

GCS_RUN = r"""
import json, os, resource, sys, tempfile, time
import numpy
mode, root, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
value = numpy.random.default_rng(0).integers(0, 256, size_mb << 20, dtype=numpy.uint8)
key = os.urandom(32)
if mode == "ours":
    from luigi_kubeface.bucket import blobs as serialization
    from luigi_kubeface.storage import open_storage
    storage = open_storage(root + "/bench")
    started = time.perf_counter()
    with serialization.Pickled(value) as pickled:
        blob = pickled.blob("result", {"job": "bench"}, key)
        assert storage.write_stream_if_absent("results/x.pkl", blob, blob.size)
    up = time.perf_counter() - started
    del value, pickled, blob
    started = time.perf_counter()
    with storage.open_read("results/x.pkl") as f:
        back = serialization.load_stream(f, key=key, expect={"job": "bench"})[1]
    down = time.perf_counter() - started
else:
    from google.cloud import storage as gcs
    scratch = tempfile.mkdtemp()
    path = os.path.join(scratch, "up")
    value.tofile(path)  # the SDK copies a file: writing it is not timed
    del value
    blob = gcs.Client().bucket(root[len("gs://"):].split("/")[0]).blob("sdk/x")
    started = time.perf_counter()
    blob.upload_from_filename(path)
    up = time.perf_counter() - started
    started = time.perf_counter()
    blob.download_to_filename(path + ".down")
    down = time.perf_counter() - started
    back = numpy.fromfile(path + ".down", dtype=numpy.uint8)  # what a user then does with the bytes
    os.unlink(path); os.unlink(path + ".down"); os.rmdir(scratch)
assert back.nbytes == size_mb << 20
print(json.dumps({"up": up, "down": down, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
"""


def local_run(checkout, size_mb, count):
    scratch = tempfile.mkdtemp(prefix="bench-big-")
    try:
        env = dict(os.environ, PYTHONPATH=checkout)
        out = subprocess.run(
            [
                sys.executable,
                PROBE,
                os.path.join(scratch, "s"),
                os.path.join(scratch, "k"),
                str(size_mb),
                str(count),
                "bytes",
            ],
            env=env,
            cwd=scratch,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def gcs_run(mode, root, size_mb, env):
    out = subprocess.run(
        [sys.executable, "-c", GCS_RUN, mode, root, str(size_mb)], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="200,1024,2048", help="MB, comma-separated")
    parser.add_argument("--count", type=int, default=10, help="results per local run")
    parser.add_argument("--before", default="", help="another checkout to measure beside this one (e.g. main)")
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    if not args.skip_local:
        rows = []
        for size in sizes:
            for name, checkout in [("before", args.before), ("streamed", REPO)]:
                if not checkout:
                    continue
                f = local_run(checkout, size, args.count)
                rows.append(
                    [
                        size,
                        name,
                        args.count,
                        f["element_mb"],
                        f["master_checking_mb"],
                        f["master_after_load_mb"],
                        f["run_s"],
                    ]
                )
        print("\nLocal backend: peak RSS in MB (Client.map returning os.urandom(size))\n")
        table(["result MB", "code", "results", "element", "master checking", "master after load()", "run s"], rows)

    scratch = tempfile.mkdtemp(prefix="bench-gcs-")
    server = FakeGCS(scratch).start()
    try:
        env = dict(os.environ, STORAGE_EMULATOR_HOST=server.url, GOOGLE_CLOUD_PROJECT="test", PYTHONPATH=REPO)
        rows = []
        for size in sizes:
            bucket = "bench-" + uuid.uuid4().hex[:8]
            server.create_bucket(bucket)
            sdk = gcs_run("sdk", "gs://%s/x" % bucket, size, env)
            ours = gcs_run("ours", "gs://%s/x" % bucket, size, env)
            for name, f in [("plain SDK (file)", sdk), ("ours (streamed)", ours)]:
                rows.append(
                    [
                        size,
                        name,
                        "%.1f" % f["up"],
                        "%.1f" % f["down"],
                        "%.1f" % (f["up"] + f["down"]),
                        "%.0f" % f["rss"],
                    ]
                )
            rows.append(
                [size, "ratio ours/SDK", "", "", "%.2f" % ((ours["up"] + ours["down"]) / (sdk["up"] + sdk["down"])), ""]
            )
        print("\nNumPy uint8 array through fake-gcs-server: seconds, peak RSS MB of the process\n")
        table(["MB", "how", "upload s", "download s", "total s", "peak RSS"], rows)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
