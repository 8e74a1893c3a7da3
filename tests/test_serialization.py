import json

import pytest

from luigi_kubeface.bucket import blobs as serialization
from luigi_kubeface.errors import CorruptBlobError, VersionMismatchError
from support import dumps_blob, loads_blob


def test_roundtrip():
    assert loads_blob(dumps_blob({"a": [1, 2]}, "result")) == {"a": [1, 2]}


@pytest.mark.parametrize("damage", [lambda b: b[:-3], lambda b: b[:-1] + b"X", lambda b: b"junk" + b])
def test_truncated_or_altered_blob_is_detected(damage):
    blob = dumps_blob(list(range(100)), "result")
    with pytest.raises(CorruptBlobError, match="delete it and rerun"):
        loads_blob(damage(blob))


def test_altered_blob_of_the_recorded_size_says_its_digest_differs():
    blob = dumps_blob(list(range(100)), "result")
    with pytest.raises(
        CorruptBlobError,
        match=r"is altered \(\d+ bytes as recorded, but its sha256 differs from "
        r"the recorded digest\); delete it and rerun",
    ):
        loads_blob(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(CorruptBlobError, match=r"is truncated or altered \(\d+ bytes, expected \d+\)"):
        loads_blob(blob[:-3])


def test_version_mismatch_names_both_versions_and_the_fix():
    blob = dumps_blob(1, "input")
    magic, rest = blob[: len(serialization.MAGIC)], blob[len(serialization.MAGIC) :]
    header, payload = rest.split(b"\n", 1)
    header = json.loads(header)
    header["cloudpickle"] = "1.0.0"
    forged = magic + json.dumps(header).encode() + b"\n" + payload
    with pytest.raises(VersionMismatchError, match=r"cloudpickle 1\.0\.0.*pip install cloudpickle==1\.0\.0"):
        loads_blob(forged, "the input")
