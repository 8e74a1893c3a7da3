"""A whole map task through `luigi` with its storage in a real S3 server (moto), then the `kubeface` command."""

import json
import os
import subprocess
import sys

import pytest

from support import REPO, run_luigi, read_text


def kubeface(args, cwd, env):
    command = [os.path.join(os.path.dirname(sys.executable), "kubeface")] + args
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_pipeline_on_s3_rerun_and_the_kubeface_commands(tmp_path, moto_s3, s3_root, monkeypatch):
    """The endpoint comes from luigi.cfg's s3_endpoint_url only (no AWS_ENDPOINT_URL_S3): the master, every
    runner and the `kubeface` command reach the server through the setting."""
    config = tmp_path / "luigi.cfg"
    repository_cfg = read_text(os.path.join(REPO, "luigi.cfg"))
    assert "\ns3_endpoint_url =\n" in repository_cfg
    config.write_text(repository_cfg.replace("\ns3_endpoint_url =\n", "\ns3_endpoint_url = %s\n" % moto_s3.url))
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL_S3"}
    env.update(LUIGI_CONFIG_PATH=str(config), PYTHONPATH=os.pathsep.join([os.path.join(REPO, "tests"), REPO]))
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    args = [
        "--module",
        "pipelines.toy",
        "SumSquares",
        "--n",
        "8",
        "--local-scheduler",
        "--kubeface-storage-root",
        s3_root,
        "--kubeface-poll-interval",
        "0.1",
    ]
    first = run_luigi(args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "sum-8.txt").read_text() == str(sum(x * x for x in range(8)))

    client, (bucket, prefix) = moto_s3.client(), s3_root[len("s3://") :].split("/", 1)
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        for o in page.get("Contents", ())
    ]
    (job,) = {k.split("/")[1] for k in keys}
    assert len([k for k in keys if "/results/" in k]) == 8 and len([k for k in keys if "/logs/" in k]) == 8
    attempts = sorted(k for k in keys if "/attempts/" in k)

    (tmp_path / "sum-8.txt").unlink()
    second = run_luigi(args, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = sorted(
        o["Key"]
        for o in client.list_objects_v2(Bucket=bucket, Prefix="%s/%s/attempts/" % (prefix, job)).get("Contents", ())
    )
    assert again == attempts  # nothing recomputed

    job_url = "%s/%s" % (s3_root, job)
    status = kubeface(["status", job_url], tmp_path, env)
    assert status.returncode == 0, status.stderr
    assert "8 elements: 8 done" in status.stdout
    assert "status page: %s/%s/%s/%s/status.html" % (moto_s3.url, bucket, prefix, job) in status.stdout
    results = kubeface(["results", job_url, "--format", "json"], tmp_path, env)
    assert results.returncode == 0, results.stderr
    assert sorted(row["summary"]["value"] for row in json.loads(results.stdout)) == sorted(x * x for x in range(8))
    logs = kubeface(["logs", job_url, "@3"], tmp_path, env)
    assert logs.returncode == 0 and "element x=3 starting" in logs.stdout, logs.stderr
    cleanup = kubeface(["cleanup", job, "--blobs", "--yes", "--storage-root", s3_root], tmp_path, env)
    assert cleanup.returncode == 0 and "deleted" in cleanup.stdout, cleanup.stderr
    assert not client.list_objects_v2(Bucket=bucket, Prefix="%s/%s/" % (prefix, job)).get("Contents")
