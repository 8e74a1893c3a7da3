import json

import pytest

from luigi_kubeface.bucket import blobs as serialization
from luigi_kubeface.errors import CorruptBlobError, VersionMismatchError


def test_roundtrip():
    assert serialization.loads(serialization.dumps({"a": [1, 2]}, "result")) == {"a": [1, 2]}


@pytest.mark.parametrize("damage", [lambda b: b[:-3], lambda b: b[:-1] + b"X", lambda b: b"junk" + b])
def test_truncated_or_altered_blob_is_detected(damage):
    blob = serialization.dumps(list(range(100)), "result")
    with pytest.raises(CorruptBlobError, match="delete it and rerun"):
        serialization.loads(damage(blob))


def test_altered_blob_of_the_recorded_size_says_its_digest_differs():
    blob = serialization.dumps(list(range(100)), "result")
    with pytest.raises(CorruptBlobError, match=r"is altered \(\d+ bytes as recorded, but its sha256 differs from "
                       r"the recorded digest\); delete it and rerun"):
        serialization.loads(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(CorruptBlobError, match=r"is truncated or altered \(\d+ bytes, expected \d+\)"):
        serialization.loads(blob[:-3])


def test_version_mismatch_names_both_versions_and_the_fix():
    blob = serialization.dumps(1, "input")
    magic, rest = blob[: len(serialization.MAGIC)], blob[len(serialization.MAGIC):]
    header, payload = rest.split(b"\n", 1)
    header = json.loads(header)
    header["cloudpickle"] = "1.0.0"
    forged = magic + json.dumps(header).encode() + b"\n" + payload
    with pytest.raises(VersionMismatchError, match=r"cloudpickle 1\.0\.0.*pip install cloudpickle==1\.0\.0"):
        serialization.loads(forged, "the input")
