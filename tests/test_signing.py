"""Signed blobs: the master never unpickles what its job's key did not sign; pods refuse tampered inputs."""

import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys

import pytest

from luigi_kubeface import Client
from luigi_kubeface.bucket import layout as naming, blobs as serialization
from luigi_kubeface.backends.local import LocalBackend
from luigi_kubeface.master.engine import run_job
from luigi_kubeface.errors import CorruptBlobError, SigningKeyError, UntrustedBlobError
from luigi_kubeface.job.definition import Job, elements_from_items
from luigi_kubeface.bucket.signing import KeyRing, job_key
from luigi_kubeface.settings import Settings
from support import Bomb, FAST, REPO, dumps_blob, loads_blob
from elements import square

KEY = bytes(range(32))


def split(blob):
    header, payload = blob[len(serialization.MAGIC) :].split(b"\n", 1)
    return json.loads(header), payload


def rewrap(header, payload):
    """What a bucket writer can do without the key: any payload with a matching size and digest."""
    header = dict(header, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    return serialization.MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def test_signed_roundtrip_and_place_check():
    blob = dumps_blob([1, 2], "result", {"element": "e1", "job": "j"}, KEY)
    assert loads_blob(blob, key=KEY, expect={"kind": "result", "element": "e1", "job": "j"}) == [1, 2]
    with pytest.raises(UntrustedBlobError, match="belongs elsewhere \\(element 'e1', expected 'e2'\\)"):
        loads_blob(blob, "the result of e2", KEY, {"element": "e2"})
    with pytest.raises(UntrustedBlobError, match="bad signature"):
        loads_blob(blob, key=bytes(32))


@pytest.mark.parametrize("forge", ["re-digested payload", "unsigned envelope", "edited header"])
def test_forged_blobs_are_refused_before_unpickling(tmp_path, forge):
    marker = tmp_path / "unpickled"
    bomb = pickle.dumps(Bomb(str(marker)))
    good = dumps_blob(7, "result", {"element": "e1", "job": "j"}, KEY)
    header, payload = split(good)
    forged = {
        "re-digested payload": lambda: rewrap(header, bomb),
        "unsigned envelope": lambda: serialization.envelope(bomb, "result", {"element": "e1", "job": "j"}),
        "edited header": lambda: rewrap(dict(header, element="e2"), payload),
    }[forge]()
    with pytest.raises(UntrustedBlobError, match="not signed with this job's key .*was not unpickled"):
        loads_blob(forged, "the result", KEY, {"element": "e1"})
    pickle.loads(bomb).close()  # it opens the marker for writing
    assert marker.exists()  # the bomb works, so the check above is what kept it from going off
    marker.unlink()


def test_key_files_are_private_reused_and_never_replaced(tmp_path):
    ring = KeyRing(str(tmp_path / "keys"))
    key = ring.create("gs://b/jobs/j1")
    assert len(key) == 32 and ring.create("gs://b/jobs/j1") == key == ring.load("gs://b/jobs/j1")
    assert ring.create("gs://b/jobs/j2") != key
    path = ring.path("gs://b/jobs/j1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    os.chmod(path, 0o644)
    with pytest.raises(SigningKeyError, match="may be written or read by other users .*chmod 600"):
        ring.load("gs://b/jobs/j1")


def test_team_key_file_must_exist_and_hold_a_key(tmp_path):
    team = tmp_path / "team.key"
    with pytest.raises(SigningKeyError, match="signing_key_file .*team.key does not exist: copy your team's key"):
        KeyRing(signing_key_file=str(team)).create("gs://b/j")
    team.write_text("not hex\n")
    team.chmod(0o600)
    with pytest.raises(SigningKeyError, match="does not hold a key .*token_hex"):
        KeyRing(signing_key_file=str(team)).load("gs://b/j")
    team.write_text("# shared by the team\n" + "ab" * 32 + "\n")
    assert KeyRing(signing_key_file=str(team)).stored_key("gs://b/j") == bytes([0xAB]) * 32
    assert KeyRing(signing_key_file=str(team)).load("gs://b/j") == job_key(bytes([0xAB]) * 32, "gs://b/j")


def test_rerun_without_the_key_file_says_how_to_recover(tmp_path):
    root, keys = str(tmp_path / "s"), tmp_path / "keys"
    client = Client(storage_root=root, key_dir=str(keys), **FAST)
    assert list(client.map(square, [1, 2], job_id="k")) == [1, 4]
    for path in keys.iterdir():
        path.unlink()  # another machine, or a wiped home directory
    with pytest.raises(
        SigningKeyError,
        match="signing key of job .*/k is not on this machine .*copy that file from "
        "the machine that ran the job .*or delete the job's results",
    ):
        client.map(square, [1, 2], job_id="k")
    assert not list(keys.iterdir())  # no new key that would silently distrust the old results


def test_team_key_lets_another_machine_trust_the_results(tmp_path):
    team = tmp_path / "team.key"
    team.write_text("cd" * 32)
    team.chmod(0o600)
    root = str(tmp_path / "s")
    first = Client(storage_root=root, key_dir=str(tmp_path / "a"), signing_key_file=str(team), **FAST)
    assert list(first.map(square, [3, 4], job_id="t")) == [9, 16]
    second = Client(storage_root=root, key_dir=str(tmp_path / "b"), signing_key_file=str(team), **FAST)
    assert list(second.map(square, [3, 4], job_id="t")) == [9, 16]
    assert len(os.listdir(os.path.join(root, "t", "attempts"))) == 2  # reused, not recomputed


def test_pods_refuse_a_tampered_function(tmp_path, storage_root):
    """A bucket writer who replaces function.pkl gets no code run in the attempts either (every storage)."""
    marker = tmp_path / "ran-in-a-pod"
    settings = Settings(
        storage_root=storage_root, key_dir=str(tmp_path / "keys"), retries=0, failure_budget=1.0, **FAST
    )
    job = Job(
        "tamper", settings.storage_root, square, elements_from_items([1, 2]), keys=KeyRing.from_settings(settings)
    )
    job.prepare()
    header, _ = split(job.store.storage.read(naming.FUNCTION))
    job.store.storage.write(naming.FUNCTION, rewrap(header, pickle.dumps(Bomb(str(marker)))))
    backend = LocalBackend(settings)
    try:
        report = run_job(job, backend, settings)
    finally:
        backend.close()
    # Every element would meet the same function: the job stops at the first attempt.
    assert report.failures and report.stopped and not marker.exists()
    failure = next(iter(report.failures.values()))
    assert failure.error_type.endswith("UntrustedBlobError")
    assert "the job's function (%s/function.pkl) is not signed with this job's key" % job.url in failure.message


def test_attempt_without_the_key_exits_2_and_stops_the_job(tmp_path):
    settings = Settings(storage_root=str(tmp_path / "s"), key_dir=str(tmp_path / "keys"), **FAST)
    job = Job("nokey", settings.storage_root, square, elements_from_items([5]), keys=KeyRing.from_settings(settings))
    job.prepare()
    (element,) = job.elements
    job.store.write_input(element, job.shared_keys, job.code_version)
    env = {k: v for k, v in os.environ.items() if k != serialization.KEY_ENV}
    env["PYTHONPATH"] = REPO
    done = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.runner", job.url, element.key, "001-1-aaaaaa"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    record = job.store.attempt_record(element.key, "001-1-aaaaaa")
    assert record["outcome"] == "unusable_input" and record["error_type"].endswith("SigningKeyError")
    assert "no signing key in its environment (KUBEFACE_SIGNING_KEY): the backend must hand" in record["message"]
    from luigi_kubeface.master.judge import failure_from_record

    assert failure_from_record(record).fatal  # every element would fail alike: the job stops


def test_result_of_other_code_renamed_as_this_codes_is_refused(tmp_path, storage_root):
    """A result filed under another code version cannot pass for this code's: the version is signed."""
    client = Client(storage_root=storage_root, key_dir=str(tmp_path / "keys"), **FAST)
    old = client.map(square, [2], job_id="versions", code_version="old")
    (key,) = old.keys
    storage = old.job.store.storage
    old_blob = storage.read(naming.result_key(key, old.job.code_version))
    new_version = client.map(square, [2], job_id="versions", code_version="new").job
    storage.write(naming.result_key(key, new_version.code_version), old_blob)
    with pytest.raises(
        CorruptBlobError,
        match="belongs elsewhere \\(code_version '%s', expected '%s'\\)"
        % (old.job.code_version, new_version.code_version),
    ):
        new_version.store.load_result(key)


def test_result_from_another_element_is_refused(tmp_path, storage_root):
    """Copying a valid signed result over another element's is caught by the signed element key."""
    client = Client(storage_root=storage_root, key_dir=str(tmp_path / "keys"), **FAST)
    results = client.map(square, [2, 3], job_id="swap")
    a, b = results.keys
    storage, version = results.job.store.storage, results.job.code_version
    storage.write(naming.result_key(b, version), storage.read(naming.result_key(a, version)))
    assert results[0] == 4
    with pytest.raises(CorruptBlobError, match="belongs elsewhere \\(element '%s', expected '%s'\\)" % (a, b)):
        results[1]
