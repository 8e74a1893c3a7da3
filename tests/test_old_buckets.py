"""A bucket written by an earlier release stays readable, and its results reusable, with the code of today.

tests/fixtures/bucket-0.1.0/ is a finished job as release 0.1.0 stored it (fixtures/make_bucket_0_1_0.py);
a move of modules or a change of the bucket's format that loses it fails here.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

import elements
from luigi_kubeface import Client
from luigi_kubeface.errors import ConfigurationError
from luigi_kubeface.bucket.signing import KeyRing
from support import read_bytes

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "bucket-0.1.0")
JOB = "written-by-0.1.0"


def old_bucket(tmp_path):
    """The fixture copied where this test may write, its key filed where key_dir keeps the key of that path."""
    root, key_dir = str(tmp_path / "bucket"), str(tmp_path / "keys")
    shutil.copytree(os.path.join(FIXTURE, "bucket"), root)
    os.makedirs(key_dir, mode=0o700)
    key_file = KeyRing(key_dir).path(os.path.join(root, JOB))
    shutil.copyfile(os.path.join(FIXTURE, "keys", "job.key"), key_file)
    os.chmod(key_file, 0o600)
    return root, key_dir


def attempt_records(root):
    return sorted(glob.glob(os.path.join(root, JOB, "attempts", "*", "*.json")))


def test_a_job_that_release_0_1_0_finished_is_reused_without_running_anything(tmp_path):
    root, key_dir = old_bucket(tmp_path)
    before = attempt_records(root)
    assert len(before) == 3
    client = Client(storage_root=root, key_dir=key_dir, poll_interval=0.05)
    assert list(client.map(elements.square, [1, 2, 3], job_id=JOB)) == [1, 4, 9]
    assert attempt_records(root) == before  # nothing ran again


def test_the_kubeface_command_reads_a_bucket_of_release_0_1_0(tmp_path):
    root, key_dir = old_bucket(tmp_path)
    config = tmp_path / "luigi.cfg"
    config.write_text("[kubeface]\nkey_dir = %s\n" % key_dir)

    def kubeface(*argv):
        run = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "kubeface"), *argv, "--storage-root", root],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, LUIGI_CONFIG_PATH=str(config)),
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    assert "3 elements: 3 done, 0 failed" in kubeface("status", JOB)
    results = kubeface("results", JOB)
    assert "refused" not in results, results  # the summaries 0.1.0 signed still verify
    rows = [line.split() for line in results.splitlines()[2:] if line.strip()]
    assert [(row[1], row[2], row[3]) for row in rows] == [("3", "9", "done"), ("2", "4", "done"), ("1", "1", "done")]


def test_a_job_a_newer_release_wrote_is_refused_by_name_and_left_as_it_was(tmp_path):
    root, key_dir = old_bucket(tmp_path)
    meta_file = os.path.join(root, JOB, "job.json")
    with open(meta_file) as f:
        meta = json.load(f)
    assert "layout_version" not in meta  # 0.1.0 wrote none: layout 1
    meta["layout_version"] = 99
    with open(meta_file, "w") as f:
        json.dump(meta, f)
    before = {
        path: read_bytes(path)
        for path in glob.glob(os.path.join(root, JOB, "**"), recursive=True)
        if os.path.isfile(path)
    }
    client = Client(storage_root=root, key_dir=key_dir, poll_interval=0.05)
    with pytest.raises(ConfigurationError) as caught:
        client.map(elements.square, [1, 2, 3, 4], job_id=JOB)
    assert "written by a newer luigi-kubeface (bucket layout 99" in str(caught.value)
    assert "upgrade luigi-kubeface" in str(caught.value)
    after = {
        path: read_bytes(path)
        for path in glob.glob(os.path.join(root, JOB, "**"), recursive=True)
        if os.path.isfile(path)
    }
    assert after == before  # nothing written, nothing lost
    run = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "kubeface"), "status", JOB, "--storage-root", root],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "bucket layout 99" in run.stdout + run.stderr


def test_a_job_written_now_says_its_layout(tmp_path, make_client):
    client = make_client(key_dir=str(tmp_path / "keys"))
    client.map(elements.square, [1], job_id="now")
    with open(tmp_path / "now" / "job.json") as f:
        assert json.load(f)["layout_version"] == 1
