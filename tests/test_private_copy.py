"""The verify-then-reread race: a bucket writer rewrites a blob's file right after it was verified.

The attacker of docs/security.md may write the bucket's files at any time. These tests give them
perfect timing: the moment the digest that verifies a blob's payload is computed, the blob's file
in the bucket is rewritten in place with a pickle that creates a file. Had the loader read the
bucket file again to unpickle it (as it did), that pickle would run in the master (results), in
`kubeface reproduce` and in the runner (inputs, shared inputs). The bytes unpickled must be the
bytes verified.
"""

import hashlib
import os
import pickle

import pytest

from luigi_kubeface import Client
from luigi_kubeface.bucket import layout as naming, blobs as serialization
from luigi_kubeface.job import identity
from luigi_kubeface.bucket.signing import KeyRing
from luigi_kubeface.runner.call import load_call
from luigi_kubeface.storage import open_storage
from support import FAST, Bomb, read_bytes

IN_MEMORY = 16 << 20  # private_copy.IN_MEMORY: larger blobs are copied into a private file
ONCE = dict(FAST, retries=0)  # the FAST settings with one attempt per element
ITEM = "i" * 1000  # an input longer than the attacker's pickle: the file keeps its size


def padded(x, pad):
    return [x, pad]  # a result longer than the attacker's pickle: the file keeps its size


def refuse(x, blob):
    raise ValueError("kept: an element that failed keeps its input in the bucket")


class SwapAfterDigest:
    """Rewrites a bucket file in place the moment its payload's sha256 is computed (and counts it)."""

    def __init__(self, monkeypatch, path, bomb):
        data = read_bytes(path)
        self.offset = data.index(b"\n", len(serialization.MAGIC)) + 1
        self.target = hashlib.sha256(data[self.offset :]).hexdigest()
        self.path, self.bomb, self.swapped, self.original = path, bomb, 0, data
        real, attack = hashlib.sha256, self

        class Hooked:
            def __init__(self, data=b""):
                self._h = real(data)

            def update(self, data):
                self._h.update(data)

            def hexdigest(self):
                value = self._h.hexdigest()
                if value == attack.target:
                    attack.swap()
                return value

            def __getattr__(self, name):
                return getattr(self._h, name)

        monkeypatch.setattr(hashlib, "sha256", Hooked)

    def swap(self):
        with open(self.path, "r+b") as f:  # the same file, the same size: only the payload's first bytes differ
            f.seek(self.offset)
            f.write(self.bomb)
        self.swapped += 1

    def restore(self):
        """The attacker puts the original bytes back: the blob verifies again afterwards."""
        with open(self.path, "r+b") as f:
            f.write(self.original)


def bomb(marker):
    return pickle.dumps(Bomb(str(marker)), protocol=5)


def test_a_result_rewritten_after_its_digest_never_runs_on_the_master(tmp_path, monkeypatch):
    root, marker = tmp_path / "s", tmp_path / "ran-on-the-master"
    client = Client(storage_root=str(root), key_dir=str(tmp_path / "keys"), **ONCE)
    results = client.map(padded, [1], job_id="race", shared={"pad": "p" * 20000})
    path = root / "race" / naming.result_key(results.keys[0], results.job.code_version)
    attack = SwapAfterDigest(monkeypatch, str(path), bomb(marker))
    try:
        value = client.map(padded, [1], job_id="race", shared={"pad": "p" * 20000})[0]
    except Exception as error:  # noqa: BLE001 - what matters first is whether the pickle ran
        value = error
    assert attack.swapped and not marker.exists(), "the attacker's pickle ran on the master"
    assert value == [1, "p" * 20000]  # the genuine result, as it was verified


@pytest.mark.parametrize("size", [10_000, IN_MEMORY + (1 << 20)], ids=["in-memory", "private-file"])
def test_an_input_rewritten_after_its_digest_never_runs_in_the_runner(tmp_path, monkeypatch, size):
    """The path of every attempt and of `kubeface reproduce`: runner.load_call, inputs and shared inputs."""
    root, keys, marker = tmp_path / "s", str(tmp_path / "keys"), tmp_path / "ran-in-the-runner"
    client = Client(storage_root=str(root), key_dir=keys, **ONCE)
    with pytest.raises(Exception, match="kept"):
        client.map(refuse, [ITEM], job_id="race", shared={"blob": b"b" * size})[0]
    job_url = naming.job_url(str(root), "race")
    storage, key, element = open_storage(job_url), KeyRing(keys).load(job_url), identity.element_key([ITEM], {})
    for blob_key in [naming.input_key(element)] + storage.list("shared/"):
        attack = SwapAfterDigest(monkeypatch, os.path.join(storage.url, blob_key), bomb(marker))
        try:
            loaded = load_call(storage, element, key, str(tmp_path / ("code-" + blob_key[:5])))[1:3]
        except Exception as error:  # noqa: BLE001 - what matters first is whether the pickle ran
            loaded = error
        assert attack.swapped and not marker.exists(), "the attacker's pickle in %s ran in the runner" % blob_key
        assert loaded == ((ITEM,), {"blob": b"b" * size}), blob_key
        monkeypatch.undo()
        attack.restore()


def test_the_private_copy_is_private_and_the_bucket_file_is_read_once(tmp_path):
    from luigi_kubeface.bucket.private_copy import private_copy

    key = os.urandom(32)
    with serialization.Pickled(b"x" * (IN_MEMORY + 1)) as pickled:
        blob = pickled.blob("shared", {"job": "j"}, key)
        data = blob.read()
    path = tmp_path / "blob.pkl"
    path.write_bytes(data)
    with open(path, "rb") as f:
        copy = private_copy(f, "blob", key, {"job": "j"})
    path.write_bytes(b"\0" * len(data))  # the bucket's file no longer matters at all
    with copy:
        fd = copy.store.file.fileno()
        assert os.fstat(fd).st_mode & 0o777 == 0o600
        assert os.readlink("/proc/self/fd/%d" % fd).endswith("(deleted)")  # no name anyone could open
        assert copy.load() == b"x" * (IN_MEMORY + 1)
