"""Results truncated or altered in storage are refused (never unpickled), moved aside and recomputed."""

import glob
import hashlib
import json
import os
import pickle

import pytest

from luigi_kubeface import Client
from luigi_kubeface.bucket import layout as naming, blobs as serialization
from luigi_kubeface.job import identity
from luigi_kubeface.errors import CorruptBlobError
from luigi_kubeface.storage import open_storage
from support import Bomb, FAST, element_from_result_key, read_json, run_luigi
from elements import square


def truncate(blob, marker):
    return blob[: len(blob) - 2]  # the payload loses its end, the header stays readable


def alter(blob, marker):
    """Swap the payload for one that would create marker when unpickled, digest and size made to match."""
    header, _ = blob[len(serialization.MAGIC) :].split(b"\n", 1)
    payload = pickle.dumps(Bomb(marker))
    header = dict(json.loads(header), size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    return serialization.MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def damage_two(storage, marker):
    """Truncate one result and alter another; returns their element keys."""
    names = sorted(n for n in storage.list(naming.RESULTS_PREFIX) if naming.result_from_key(n))
    damaged = [names[1], names[-2]]
    for name, how in zip(damaged, (truncate, alter)):
        storage.write(name, how(storage.read(name), marker))
    return {element_from_result_key(name) for name in damaged}


def attempts_by_element(storage):
    return sorted(k.split("/")[1] for k in storage.list(naming.ATTEMPTS_PREFIX))


def test_damaged_results_are_refused_and_recomputed_by_the_next_run(tmp_path, storage_root):
    root = storage_root
    marker = str(tmp_path / "the-master-unpickled-it")
    client = Client(storage_root=root, key_dir=str(tmp_path / "keys"), **FAST)
    items, expected = list(range(8)), [x * x for x in range(8)]
    assert list(client.map(square, items, job_id="dmg")) == expected
    storage = open_storage(root + "/dmg")
    damaged = damage_two(storage, marker)
    before = attempts_by_element(storage)

    results = client.map(square, items, job_id="dmg")  # one listing: every element looks done
    with pytest.raises(CorruptBlobError) as caught:
        list(results)
    text = str(caught.value)
    assert "was not unpickled" in text or "is truncated or altered" in text
    assert "moved aside to" in text and "rerun the job to recompute it" in text
    assert "1 more damaged result(s) of this job were moved aside too" in text  # both found in one pass
    assert all(key in text for key in damaged)
    assert len(storage.list(naming.QUARANTINE_PREFIX)) == 2

    assert list(client.map(square, items, job_id="dmg")) == expected
    new = list(attempts_by_element(storage))
    for key in before:
        new.remove(key)
    assert sorted(new) == sorted(damaged)  # exactly the two damaged elements ran again
    assert len(storage.list(naming.RESULTS_PREFIX)) == 8
    assert not os.path.exists(marker)  # the altered payload was never unpickled by the master


def sabotaged(x, root):
    """Before the runner writes its result, put garbage at the result's key (once per element)."""
    key = identity.element_key((x,), {})
    flag = os.path.join(root, "sabotaged-%d" % x)
    if x == 2 and not os.path.exists(flag):
        open(flag, "w").close()
        with open(os.path.join(root, "job", naming.FUNCTION), "rb") as f:  # results are filed by code version
            version = serialization.read_header(f.read())[0]["code_version"]
        path = os.path.join(root, "job", naming.result_key(key, version))
        os.makedirs(os.path.dirname(path), exist_ok=True)  # the first result of the job may be this one
        with open(path, "wb") as f:
            f.write(b"not a result")
    return x + 100


def test_engine_refuses_a_bad_result_when_the_attempt_ends_and_reruns_it(tmp_path):
    root = str(tmp_path)
    client = Client(storage_root=root, key_dir=str(tmp_path / "keys"), retries=1, **FAST)
    assert list(client.map(sabotaged, [1, 2, 3], job_id="job", shared={"root": root})) == [101, 102, 103]
    records = [read_json(p) for p in glob.glob(os.path.join(root, "job", "attempts", "*", "*.json"))]
    refused = [r for r in records if r["outcome"] == "result_refused"]
    assert len(records) == 4 and len(refused) == 1, [(r["outcome"], r.get("message", "")[:300]) for r in records]
    assert "not a luigi-kubeface blob" in refused[0]["message"] and "moved aside" in refused[0]["message"]
    assert refused[0]["host"]  # the runner's own account is kept under the master's verdict


@pytest.mark.slow
def test_toy_pipeline_recomputes_damaged_results(tmp_path):
    root = str(tmp_path / "storage")
    marker = str(tmp_path / "the-master-unpickled-it")
    args = [
        "--module",
        "pipelines.toy",
        "SumSquares",
        "--n",
        "6",
        "--local-scheduler",
        "--kubeface-storage-root",
        root,
        "--kubeface-key-dir",
        str(tmp_path / "keys"),
        "--kubeface-poll-interval",
        "0.1",
    ]
    first = run_luigi(args, cwd=tmp_path, timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    (job,) = os.listdir(root)
    storage = open_storage(os.path.join(root, job))
    damaged = damage_two(storage, marker)
    before = attempts_by_element(storage)
    (tmp_path / "sum-6.txt").unlink()

    second = run_luigi(args, cwd=tmp_path, timeout=180)
    output = second.stdout + second.stderr
    assert second.returncode == 30, output[-3000:]  # the consumer fails, naming the blob and the fix
    assert "moved aside to" in output and "rerun the job to recompute it" in output
    assert len(storage.list(naming.QUARANTINE_PREFIX)) == 2

    third = run_luigi(args, cwd=tmp_path, timeout=180)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "4 already done, 2 to run" in third.stderr
    assert (tmp_path / "sum-6.txt").read_text() == str(sum(x * x for x in range(6)))
    new = list(attempts_by_element(storage))
    for key in before:
        new.remove(key)
    assert sorted(new) == sorted(damaged)
    assert not os.path.exists(marker)


_FLIPPER = """
import os, sys, time
folder, done = sys.argv[1:]
before = set(os.listdir(folder))
while True:
    names = [n for n in os.listdir(folder) if n.endswith(".pkl") and n not in before]
    if names:
        path = os.path.join(folder, names[0])
        with open(path, "r+b") as f:
            f.seek(-1, 2)
            last = f.read(1)
            f.seek(-1, 2)
            f.write(bytes([last[0] ^ 1]))  # one payload bit, right after the runner wrote it
        open(done, "w").close()
        break
    time.sleep(0.0005)
"""


def test_a_superseded_result_is_kept_until_its_replacement_is_verified_whole(tmp_path):
    """Hardening (issue 25): one payload bit flipped right after the runner wrote a new result still gave success;
    the superseded version's result was deleted, and loading refused the altered one: no result at all."""
    import subprocess
    import sys

    root = tmp_path / "s"
    client = Client(storage_root=str(root), retries=1, **FAST)
    assert list(client.map(square, [3], job_id="flip", code_version="v1")) == [9]
    done = tmp_path / "flipped"
    flipper = subprocess.Popen([sys.executable, "-c", _FLIPPER, str(root / "flip" / "results"), str(done)])
    try:
        results = client.map(square, [3], job_id="flip", code_version="v2")
        flipper.wait(timeout=60)
    finally:
        flipper.kill()
    assert done.exists()
    assert list(results) == [9]  # refused whole at the attempt's end, retried; or the earlier result kept
