"""Signed summaries: a forged attempt record decides nothing about which element ranks best (issue 25, item 6).

The runner signs its result's summary with its attempt's result key; records(), to_pandas(), `kubeface
results` and the status page count only summaries that verify, and say when one is refused.
"""

import json
import logging
import os
import subprocess
import sys
import time

import pytest

from luigi_kubeface import Client
from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.views.job_state import JobState
from luigi_kubeface.bucket.job_store import JobStore
from luigi_kubeface.bucket.result_store import Counting
from luigi_kubeface.bucket.signing import KeyRing
from luigi_kubeface.views.status_page import render
from support import FAST, REPO, TESTS


def accuracy(x):
    return {"accuracy": [0.7, 0.5, 0.6, 0.9, 0.8][x]}  # the honest best is x=3


def _job(tmp_path, **extra):
    root, keys = tmp_path / "s", tmp_path / "keys"
    results = Client(storage_root=str(root), key_dir=str(keys), **FAST, **extra).map(accuracy, range(5), job_id="acc")
    return root, keys, results


def _plant(results, element, record):
    """An extra attempt record, as a bucket writer adds it: a well-formed id, late `finished`."""
    attempt = naming.new_attempt_id(7)
    path = os.path.join(results.job.url, naming.attempt_record_key(element, attempt))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(record, element=element, attempt=attempt, finished=time.time() + 3600), f)
    return attempt


def _records(results, element):
    store = results.job.store
    return [store.attempt_record(element, a) for a in store.attempts(element)]


def _kubeface_results(root, keys):
    config = os.path.join(os.path.dirname(root), "luigi.cfg")
    with open(config, "w") as f:
        f.write("[kubeface]\nkey_dir = %s\n" % keys)
    return subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli", "results", "acc", "--storage-root", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS]), LUIGI_CONFIG_PATH=config),
    )


def test_a_forged_attempt_record_does_not_rank_its_element_best(tmp_path, caplog):
    root, keys, results = _job(tmp_path)
    assert [r["x"] for r in sorted(results.records(), key=lambda r: -r["accuracy"])][0] == 3
    x0, x3 = results.keys[0], results.keys[3]
    genuine = _records(results, x0)[0]
    assert genuine["summary"] == {"accuracy": 0.7}
    _plant(results, x0, dict(genuine, summary={"accuracy": 1.5}))  # the signature of the honest summary kept
    _plant(results, x0, {k: v for k, v in genuine.items() if k != "summary_hmac"} | {"summary": {"accuracy": 1.5}})
    _plant(results, x0, _records(results, x3)[0])  # x=3's genuine signed record, copied to x=0
    with caplog.at_level(logging.WARNING, logger="luigi_kubeface.results"):
        records = results.records()
    ranking = sorted(records, key=lambda r: -r["accuracy"])
    assert ranking[0]["x"] == 3 and records[0]["accuracy"] == 0.7  # x=0 keeps its real value
    assert genuine["summary_hmac"]
    assert results.summary_notes == [
        "3 summaries refused: not signed by this job's key (forged or altered in storage; elements %s)" % x0
    ]
    assert "3 summaries refused: not signed by this job's key" in caplog.text
    run = _kubeface_results(root, keys)
    assert run.returncode == 0, run.stderr
    assert [r["params"]["x"] for r in json.loads(run.stdout)][0] == 3
    assert "3 summaries refused: not signed by this job's key" in run.stderr
    html = render(JobState(results.job).refresh(), final=True)
    section = html[html.index("<h2>Results</h2>") :]
    section = section[: section.index("</table>")]  # the Results table, not the elements' own table
    assert "3 summaries refused" in section and "1.5" not in section
    assert section.index("<td>3</td>") < section.index("<td>0</td>")  # x=3 is the page's best row


def test_to_pandas_uses_only_verified_summaries(tmp_path):
    pytest.importorskip("pandas")
    _, _, results = _job(tmp_path)
    _plant(results, results.keys[0], dict(_records(results, results.keys[0])[0], summary={"accuracy": 1.5}))
    frame = results.to_pandas()
    assert frame.sort_values("accuracy", ascending=False).iloc[0]["x"] == 3 and frame["accuracy"].max() == 0.9


def test_without_the_jobs_key_no_summary_counts_and_the_reader_is_told(tmp_path):
    root, keys, results = _job(tmp_path)
    elsewhere = JobStore(results.job.url, keys=KeyRing(str(tmp_path / "other-keys")))
    state = JobState(elsewhere).refresh()
    assert all(element.summary == {} for element in state.elements())
    assert state.summary_notes()[0].startswith("5 summaries refused: not verifiable without this job's signing key")
    run = _kubeface_results(root, tmp_path / "other-keys")
    assert "5 summaries refused: not verifiable" in run.stderr and run.returncode == 0


def _as_an_earlier_release_wrote(results):
    """Its records as releases before signed summaries wrote them: no summary_hmac."""
    for element in results.keys:
        for attempt in results.job.store.attempts(element):
            path = os.path.join(results.job.url, naming.attempt_record_key(element, attempt))
            with open(path) as f:
                record = json.load(f)
            record.pop("summary_hmac")
            with open(path, "w") as f:
                json.dump(record, f)


def test_unsigned_summaries_count_only_under_a_version_this_release_never_signed(tmp_path):
    """An earlier release's bucket: its summaries count under their old code version, and the reader is told;
    under the job's current version an unsigned summary is refused (this release signs all it writes there)."""
    root, keys, results = _job(tmp_path, reuse_results="any")
    _as_an_earlier_release_wrote(results)
    old = results.job.code_version
    upgraded = JobStore(results.job.url, keys=KeyRing(str(keys)), counting=Counting("newer-code", reuse_any=True))
    state = JobState(upgraded).refresh()
    assert [e.summary["accuracy"] for e in state.elements()] == [0.7, 0.5, 0.6, 0.9, 0.8]
    assert state.summary_notes()[0].startswith("5 summaries counted unverified: written by an earlier release")
    current = JobState(
        JobStore(results.job.url, keys=KeyRing(str(keys)), counting=Counting(old, reuse_any=True))
    ).refresh()
    assert all(e.summary == {} for e in current.elements())
    assert current.summary_notes()[0].startswith("5 summaries refused: not signed by this job's key")
    assert [r.get("accuracy") for r in results.records()] == [None] * 5  # the master's own view: refused too
