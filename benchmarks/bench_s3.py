"""Issue 22: s3:// against boto3 used directly, on moto's S3 server (127.0.0.1), each beside its peer in one run.

1. Rerun check of a finished N-element job: the map task's complete() and JobStore.finished() (what
   ResultIndex asks: one paginated ListObjectsV2 of results/), HTTP requests counted, beside one
   head_object per element (timed over a sample and scaled to N when --sample < N; said so).
2. A SIZE MB result (NumPy uint8) through our storage (write_stream_if_absent, then open_read and
   load_stream: signed header, sha256 checked before unpickling) beside boto3's own upload_file and
   download_file of the same bytes (the file is written beforehand, not timed). Each run is a child
   process (peak RSS from getrusage); rounds alternate which side goes first.

    python benchmarks/bench_s3.py [--n 50000] [--sample 2000] [--rounds 3] [--size-mb 1024] [--blob-rounds 2]
"""

import argparse
import collections
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from common import REPO, median, table

from infra.servers import MotoS3  # noqa: E402 - the server the tests start, started the same way

import luigi  # noqa: E402

BLOB_RUN = r"""
import json, os, resource, sys, tempfile, time
import numpy
mode, root, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
value = numpy.random.default_rng(0).integers(0, 256, size_mb << 20, dtype=numpy.uint8)
if mode == "ours":
    from luigi_kubeface.bucket import blobs as serialization
    from luigi_kubeface.storage import open_storage
    key = os.urandom(32)
    storage = open_storage(root)
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
    storage.delete("results/x.pkl")
else:
    import boto3
    bucket = root[len("s3://"):].split("/")[0]
    client = boto3.client("s3")  # boto3's defaults: its transfer manager (8 MB parts, 10 threads), its retries
    scratch = tempfile.mkdtemp()
    path = os.path.join(scratch, "up")
    value.tofile(path)  # upload_file copies a file: writing it is not timed
    del value
    started = time.perf_counter()
    client.upload_file(path, bucket, "sdk/x")
    up = time.perf_counter() - started
    started = time.perf_counter()
    client.download_file(bucket, "sdk/x", path + ".down")
    down = time.perf_counter() - started
    back = numpy.fromfile(path + ".down", dtype=numpy.uint8)  # what a user then does with the bytes
    os.unlink(path); os.unlink(path + ".down"); os.rmdir(scratch)
    client.delete_object(Bucket=bucket, Key="sdk/x")
assert back.nbytes == size_mb << 20
print(json.dumps({"up": up, "down": down, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
"""


def seed(client, bucket, keys, body):
    """One small object per result key, 16 uploads at a time (the listing reads names, not bytes)."""
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=body), keys))


def counting(client):
    """A Counter of the HTTP requests this boto3 client sends, by operation (botocore's before-send event)."""
    counts = collections.Counter()

    def count(request, event_name, **_):
        counts[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-send.s3", count, unique_id="bench-s3-count")
    return counts


def stop_counting(client):
    client.meta.events.unregister("before-send.s3", unique_id="bench-s3-count")


def rerun_rounds(n, root, rounds):
    """(complete() seconds, finished() seconds, requests of one finished()) per round, fresh task each time."""
    from bench_pipelines import TrivialMap
    from luigi_kubeface.luigi_adapter.targets import ResultIndex

    results = []
    for _ in range(rounds):
        luigi.task_register.Register.clear_instance_cache()  # a fresh task: grid and settings built anew
        started = time.perf_counter()
        task = TrivialMap(n=n)
        assert task.complete(), "the seeded results were not found"
        complete_s = time.perf_counter() - started
        job = task.kubeface_job()
        ResultIndex.forget(job)
        counts = counting(job.storage.inner._client())
        started = time.perf_counter()
        assert len(job.store.finished()) == n
        finished_s = time.perf_counter() - started
        stop_counting(job.storage.inner._client())
        results.append((complete_s, finished_s, dict(counts)))
    return results


def head_each(client, bucket, keys, rounds):
    """The peer: one head_object per element over the sample keys; seconds per round."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for k in keys:
            client.head_object(Bucket=bucket, Key=k)
        times.append(time.perf_counter() - started)
    return times


def rerun_bench(server, args):
    from bench_pipelines import TrivialMap
    from luigi_kubeface.bucket import layout as naming

    bucket = "bench-rerun-" + uuid.uuid4().hex[:8]
    server.create_bucket(bucket)
    root = "s3://%s/jobs" % bucket
    luigi.configuration.get_config().set("kubeface", "storage_root", root)
    task = TrivialMap(n=args.n)
    job = task.kubeface_job()
    version = job.store.counted_versions[0]
    prefix = "jobs/%s/" % job.id
    keys = [prefix + naming.result_key(e.key, version) for e in job.elements]
    client = server.client()
    started = time.perf_counter()
    seed(client, bucket, keys, os.urandom(200))
    print("seeded %d results in moto in %.0fs" % (len(keys), time.perf_counter() - started), flush=True)

    ours = rerun_rounds(args.n, root, args.rounds)
    sample = keys[:: max(1, len(keys) // args.sample)][: args.sample]
    counts = counting(client)
    peer = [s * len(keys) / len(sample) for s in head_each(client, bucket, sample, args.rounds)]
    peer_requests = sum(counts.values()) * len(keys) // (len(sample) * args.rounds)
    stop_counting(client)
    complete_s, finished_s = median([r[0] for r in ours]), median([r[1] for r in ours])
    requests = ", ".join("%d %s" % (c, op) for op, c in sorted(ours[0][2].items()))
    scaled = "" if len(sample) >= len(keys) else " (from %d)" % len(sample)
    print("\nRerun check of a finished %d-element job on s3:// (moto), median of %d rounds\n" % (args.n, args.rounds))
    table(
        ["how", "HTTP requests", "seconds", "peer / this"],
        [
            [
                "ours: TrivialMap.complete() (grid + one listing)",
                requests,
                "%.2f" % complete_s,
                "%.1fx" % (median(peer) / complete_s),
            ],
            [
                "ours: JobStore.finished() (the listing alone)",
                requests,
                "%.2f" % finished_s,
                "%.1fx" % (median(peer) / finished_s),
            ],
            [
                "peer: one head_object per element",
                "%d HeadObject%s" % (peer_requests, scaled),
                "%.2f%s" % (median(peer), scaled),
                "1.0x",
            ],
        ],
    )
    print(
        "rounds: complete() %s s; finished() %s s; head_object each %s s"
        % (
            ", ".join("%.2f" % r[0] for r in ours),
            ", ".join("%.2f" % r[1] for r in ours),
            ", ".join("%.2f" % p for p in peer),
        ),
        flush=True,
    )


def blob_bench(server, args):
    bucket = "bench-blob-" + uuid.uuid4().hex[:8]
    server.create_bucket(bucket)
    root = "s3://%s/jobs" % bucket
    env = dict(os.environ, PYTHONPATH=REPO)
    runs = {"ours": [], "sdk": []}
    for i in range(args.blob_rounds):
        for mode in ("ours", "sdk") if i % 2 == 0 else ("sdk", "ours"):
            out = subprocess.run(
                [sys.executable, "-c", BLOB_RUN, mode, root, str(args.size_mb)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
            print("round %d %s: %s" % (i + 1, mode, runs[mode][-1]), flush=True)
    rows = []
    for mode, name in [
        ("sdk", "boto3 upload_file / download_file"),
        ("ours", "ours: write_stream_if_absent / open_read"),
    ]:
        r = runs[mode]
        rows.append(
            [
                args.size_mb,
                name,
                "%.1f" % median([x["up"] for x in r]),
                "%.1f" % median([x["down"] for x in r]),
                "%.1f" % median([x["up"] + x["down"] for x in r]),
                "%.0f" % max(x["rss"] for x in r),
            ]
        )
    ratio = median([x["up"] + x["down"] for x in runs["ours"]]) / median([x["up"] + x["down"] for x in runs["sdk"]])
    rows.append([args.size_mb, "ratio ours / boto3", "", "", "%.2f" % ratio, ""])
    print(
        "\nA %d MB NumPy uint8 result through moto's S3: medians of %d rounds (order alternating), "
        "peak RSS MB of the process\n" % (args.size_mb, args.blob_rounds)
    )
    table(["MB", "how", "upload s", "download s", "total s", "peak RSS"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--sample", type=int, default=2000, help="elements timed for the head_object peer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--blob-rounds", type=int, default=2)
    parser.add_argument("--skip-rerun", action="store_true")
    parser.add_argument("--skip-blob", action="store_true")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="bench-s3-")
    server = MotoS3(scratch).start()
    previous = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL_S3=server.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        if not args.skip_rerun:
            rerun_bench(server, args)
        if not args.skip_blob:
            blob_bench(server, args)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    main()
