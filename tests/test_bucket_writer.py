"""Attacks by someone who may write the bucket but holds no key: none runs code on the master or leaks the key.

Each test plays the attack end to end against real files, real processes and the local backend.
"""

import os

import pytest

from luigi_kubeface import Client
from luigi_kubeface.bucket import layout as naming, blobs as serialization
from luigi_kubeface.errors import CorruptBlobError, KubefaceError, UntrustedBlobError
from luigi_kubeface.bucket.signing import KeyRing
from support import Bomb, FAST, dumps_blob, loads_blob
from elements import square


def regular_files(root):
    """Every plain file under root, without following links (what a bucket reader can fetch)."""
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                yield path


def key_in_bucket(root, key_hex):
    """The key as an attacker would find it in the bucket, if it is anywhere there."""
    for path in regular_files(root):
        with open(path, "rb") as f:
            if key_hex.encode() in f.read():
                return bytes.fromhex(key_hex)
    return None


def test_a_link_to_the_key_file_neither_leaks_the_key_nor_lets_a_forged_result_run(tmp_path):
    root, keys = tmp_path / "s", tmp_path / "keys"
    client = Client(storage_root=str(root), key_dir=str(keys), **FAST)
    results = client.map(square, [1, 2], job_id="leak")
    job_url = results.job.url
    key_file = KeyRing(str(keys)).path(job_url)  # predictable: a digest of the job's URL
    victim = root / "leak" / naming.result_key(results.keys[0], results.job.code_version)
    victim.unlink()
    os.symlink(key_file, victim)
    with pytest.raises(CorruptBlobError) as refused:
        client.map(square, [1, 2], job_id="leak")[0]  # the master reads the result and puts it aside
    real_key = KeyRing(str(keys)).load(job_url)
    leaked = key_in_bucket(str(root), real_key.hex())
    marker = tmp_path / "ran-on-the-master"
    forged = dumps_blob(
        Bomb(str(marker)),
        "result",
        {"element": results.keys[0], "job": "leak", "code_version": results.job.code_version},
        leaked or os.urandom(32),
    )
    victim.unlink(missing_ok=True)
    victim.write_bytes(forged)
    try:
        client.map(square, [1, 2], job_id="leak")[0]
    except UntrustedBlobError:
        pass
    assert not marker.exists(), "a result forged with the leaked key ran on the master"
    assert leaked is None
    assert "symbolic link" in str(refused.value)
    aside = sorted((root / "leak" / "quarantine").rglob("*.pkl.*"))
    assert sorted(p.is_symlink() for p in aside) == [False, True]  # the link was moved, not the bytes behind it
    assert list(client.map(square, [1, 2], job_id="leak")) == [1, 4]  # recomputed


def test_linked_directories_in_the_bucket_are_never_written_through(tmp_path):
    root, outside = tmp_path / "s", tmp_path / "outside"
    for name in ("inputs", "logs"):
        (outside / name).mkdir(parents=True)
        (root / "escape").mkdir(parents=True, exist_ok=True)
        os.symlink(outside / name, root / "escape" / name)
    with pytest.raises(KubefaceError, match="inputs is a symbolic link .*never follows links"):
        Client(storage_root=str(root), key_dir=str(tmp_path / "keys"), **FAST).map(square, [1, 2], job_id="escape")
    assert list(regular_files(str(outside))) == []


@pytest.mark.parametrize("signature", ["\u00e9" * 64, "\ud800", 7, None])
def test_a_malformed_signature_is_quarantined_not_a_crash(tmp_path, signature, make_client):
    client = make_client("s", key_dir=str(tmp_path / "keys"))
    results = client.map(square, [3], job_id="mac")
    path = tmp_path / "s" / "mac" / naming.result_key(results.keys[0], results.job.code_version)
    header, payload = path.read_bytes()[len(serialization.MAGIC) :].split(b"\n", 1)
    header = dict(__import__("json").loads(header), hmac=signature)
    path.write_bytes(serialization.MAGIC + __import__("json").dumps(header).encode() + b"\n" + payload)
    with pytest.raises(UntrustedBlobError, match="not signed with this job's key .*moved aside to"):
        client.map(square, [3], job_id="mac")[0]
    assert not path.exists() and list((tmp_path / "s" / "mac" / "quarantine").rglob("*.pkl.*"))
    assert list(client.map(square, [3], job_id="mac")) == [9]


def test_a_header_nested_too_deep_is_corrupt_not_a_crash():
    blob = serialization.MAGIC + b"[" * 100000 + b"]" * 100000 + b"\n"
    with pytest.raises(CorruptBlobError, match="unreadable header"):
        loads_blob(blob, key=os.urandom(32))


def plus(x, v):
    return x + v


def test_an_old_shared_input_copied_over_the_new_one_is_refused(tmp_path):
    root = tmp_path / "s"
    client = Client(storage_root=str(root), key_dir=str(tmp_path / "keys"), retries=0, **FAST)
    assert list(client.map(plus, [1], job_id="sh", shared={"v": 10})) == [11]
    assert list(client.map(plus, [1, 2], job_id="sh", shared={"v": 20})) == [11, 22]
    old, new = sorted((root / "sh" / "shared").iterdir(), key=lambda p: p.stat().st_mtime)
    new.write_bytes(old.read_bytes())  # both are validly signed for this job: only the address tells them apart
    with pytest.raises(KubefaceError, match="shared input 'v' .*does not hold the content its name addresses"):
        list(client.map(plus, [1, 2, 3], job_id="sh", shared={"v": 20}))
    new.unlink()
    assert list(client.map(plus, [1, 2, 3], job_id="sh", shared={"v": 20})) == [11, 22, 23]
