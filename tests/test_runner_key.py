"""What code unpickled in an attempt can reach: never the job's key, only this attempt's result key.

A real runner process gets the key through its pipe, as from the local backend, and unpickles an
input (validly signed: what an attacker who won a race, or any input pickle, would run) that walks
every frame and every object for 32-byte keys and hex strings and writes them out.
"""

import json
import os

import pytest

from luigi_kubeface import Client
from luigi_kubeface.bucket import signing as keys, layout as naming, blobs as serialization
from luigi_kubeface.job import identity
from luigi_kubeface.runner import attempt as runner
from luigi_kubeface.errors import UntrustedBlobError
from luigi_kubeface.bucket.signing import KeyRing
from support import dumps_blob, loads_blob, run_runner
from support import FAST

ONCE = dict(FAST, retries=0)  # the FAST settings with one attempt per element

HUNT = """
def hunt(leak):
    import gc, json, sys
    seen = set()
    def note(v):
        if isinstance(v, (bytes, bytearray)) and len(v) == 32:
            seen.add(bytes(v).hex())
        elif isinstance(v, str) and len(v) == 64:
            seen.add(v.lower())
    for frame in list(sys._current_frames().values()) + [sys._getframe()]:
        while frame is not None:
            for v in list(frame.f_locals.values()):
                note(v)
            frame = frame.f_back
    for o in gc.get_objects():
        for r in gc.get_referents(o):
            note(r)
    with open(leak, "w") as f:
        json.dump(sorted(seen), f)
hunt(%r)
"""


class KeyHunter:
    def __init__(self, leak):
        self.leak = leak

    def __reduce__(self):
        return (exec, (HUNT % self.leak,))


def refuse(x):
    raise ValueError("kept: an element that failed keeps its input in the bucket")


def test_code_unpickled_in_an_attempt_cannot_reach_the_jobs_key(tmp_path):
    root, key_dir, leak = tmp_path / "s", str(tmp_path / "keys"), tmp_path / "leak.json"
    client = Client(storage_root=str(root), key_dir=key_dir, **ONCE)
    with pytest.raises(Exception, match="kept"):
        client.map(refuse, [1], job_id="steal")[0]
    job_url = naming.job_url(str(root), "steal")
    key, element = KeyRing(key_dir).load(job_url), identity.element_key([1], {})
    (root / "steal" / naming.input_key(element)).write_bytes(
        dumps_blob(KeyHunter(str(leak)), "input", {"element": element, "job": "steal", "shared": {}}, key)
    )
    done = run_runner(job_url, element, naming.new_attempt_id(2), key, tmp_path)
    assert done.returncode == runner.EXIT_UNUSABLE_INPUT, done.stderr.decode()[-2000:]
    found = json.loads(leak.read_text())  # the hunter ran: it did see the attempt's own key
    assert found, "the hunter found nothing at all"
    assert key.hex() not in found, "code unpickled in the attempt found the job's signing key"


def test_an_attempt_key_signs_only_its_own_result(tmp_path):
    job_key = os.urandom(32)
    mine = keys.attempt_key(job_key, "j", "e" * 24, "v1", "0001-aa")
    signed = dict(element="e" * 24, job="j", code_version="v1", attempt="0001-aa", signer=keys.ATTEMPT_SIGNER)
    blob = dumps_blob(42, "result", signed, mine)
    assert loads_blob(blob, key=job_key, expect={"kind": "result", "element": "e" * 24}) == 42
    for kind, changed in [
        ("input", {}),
        ("function", {}),
        ("shared", {}),
        ("result", {"element": "f" * 24}),
        ("result", {"code_version": "v2"}),
        ("result", {"attempt": "0002-bb"}),
    ]:
        forged = dumps_blob(0, kind, dict(signed, **changed), mine)
        with pytest.raises(UntrustedBlobError, match="not signed with this job's key"):
            loads_blob(forged, key=job_key)


def double(x):
    return 2 * x


def test_results_signed_with_the_jobs_key_by_earlier_releases_still_count(tmp_path):
    root, key_dir = tmp_path / "s", str(tmp_path / "keys")
    client = Client(storage_root=str(root), key_dir=key_dir, **ONCE)
    results = client.map(double, [1], job_id="old")
    assert list(results) == [2]
    path = root / "old" / naming.result_key(results.keys[0], results.job.code_version)
    header, _ = serialization.read_header(path.read_bytes(), key=KeyRing(key_dir).load(results.job.url))
    assert header["signer"] == keys.ATTEMPT_SIGNER
    extra = {k: header[k] for k in ("element", "attempt", "job", "code_version")}  # as earlier runners signed it
    path.unlink()
    with serialization.Pickled(-2) as pickled:
        path.write_bytes(pickled.blob("result", extra, KeyRing(key_dir).load(results.job.url)).read())
    assert list(client.map(double, [1], job_id="old")) == [-2]  # read as it is, not recomputed
