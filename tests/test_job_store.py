"""The JobStore reads buckets laid out by earlier versions, and finds jobs by URL or id."""

import json
import os

import pytest

from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.errors import JobNotFoundError, UnreadableRecordError
from luigi_kubeface.views.job_state import JobState
from luigi_kubeface.bucket.catalog import is_job_url, list_jobs, open_job, resolve
from luigi_kubeface.bucket.job_store import JobStore
from luigi_kubeface.bucket.records import Outcome, RunSummary

OK, BAD = "72202434615a2d7ca80b40b4", "b4ec56b82bf0eec148649130"
VERSION = "e22dd215ac649982"
OK_ATTEMPT, BAD_ATTEMPT = "001-1795975387-5a842d7a30e5", "001-1795975387-2ec10f71774c"
OLD_RUN = "20261201T000000Z-0badc0de"

# What main's Client.map and Luigi master wrote for a job of two elements (one failed), byte for byte
# in layout: job.json, elements.json, progress.json, the runner's records, and a Luigi run summary
# into which the map task merged its elements_shown flag.
MAIN_BUCKET = {
    "job.json": {
        "python": "3.11",
        "cloudpickle": "3.1.3",
        "job": "old",
        "elements": 2,
        "function": "f",
        "code_version": VERSION,
        "code": {"digest": "e3b0", "modules": [], "bytes": 0, "requirements": {}, "pinned": None},
        "reuse_results": "same_code",
        "result_metric": "",
        "result_direction": "maximize",
        "shared": {},
        "updated": 1795975387.6281695,
        "backend": "local",
    },
    "elements.json": {"keys": [OK, BAD], "labels": ["1", "2"], "params": [{"x": 1}, {"x": 2}]},
    "progress.json": {
        "updated": 1795975387.7580442,
        "final": True,
        "counts": {
            "total": 2,
            "reused": 0,
            "pending": 0,
            "running": 0,
            "starting": 0,
            "succeeded": 1,
            "failed": 1,
            "retried": 0,
            "speculated": 0,
        },
        "running": {},
    },
    naming.attempt_record_key(OK, OK_ATTEMPT): {
        "element": OK,
        "attempt": OK_ATTEMPT,
        "host": "vm",
        "node": "",
        "pid": 16342,
        "started": 1795975387.72,
        "python": "3.11",
        "cloudpickle": "3.1.3",
        "code_version": VERSION,
        "outcome": "success",
        "result_bytes": 428,
        "result_written": True,
        "result_type": "dict",
        "result_size": 1,
        "summary": {"score": 1.5},
        "finished": 1795975387.73,
        "duration": 0.0137,
    },
    naming.attempt_record_key(BAD, BAD_ATTEMPT): {
        "element": BAD,
        "attempt": BAD_ATTEMPT,
        "host": "vm",
        "node": "",
        "pid": 16343,
        "started": 1795975387.72,
        "python": "3.11",
        "cloudpickle": "3.1.3",
        "code_version": VERSION,
        "outcome": "error",
        "error_type": "ValueError",
        "message": "two",
        "traceback": "Traceback ...\nValueError: two\n",
        "finished": 1795975387.73,
        "duration": 0.0073,
    },
    naming.dispatch_key(OLD_RUN): {
        "run": OLD_RUN,
        "started": 1795975387.5,
        "finished": 1795975388.0,
        "stopped": "",
        "errors": ["1 x ValueError: two"],
        "total": 2,
        "reused": 0,
        "pending": 0,
        "running": 0,
        "starting": 0,
        "succeeded": 1,
        "failed": 1,
        "retried": 0,
        "speculated": 0,
        "elements_shown": True,
    },
}


@pytest.fixture
def main_bucket(tmp_path):
    root = tmp_path / "root"
    for key, record in MAIN_BUCKET.items():
        path = root / "old" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
    for key in (naming.result_key(OK, VERSION), naming.log_key(OK, OK_ATTEMPT), naming.log_key(BAD, BAD_ATTEMPT)):
        (root / "old" / key).parent.mkdir(parents=True, exist_ok=True)
        (root / "old" / key).write_bytes(b"written by main\n")
    return str(root)


def test_a_bucket_laid_out_by_main_reads_through_the_store(main_bucket):
    store = open_job("old", main_bucket)
    assert store.url == os.path.join(main_bucket, "old") and store.code_version == VERSION and not store.reuse_any
    assert store.finished() == {OK} and store.attempts(BAD) == [BAD_ATTEMPT]
    assert store.all_attempts() == {OK: [OK_ATTEMPT], BAD: [BAD_ATTEMPT]}
    record = store.attempt_record(BAD, BAD_ATTEMPT)
    assert (
        record.outcome is Outcome.ERROR
        and record.failed
        and record == MAIN_BUCKET[naming.attempt_record_key(BAD, BAD_ATTEMPT)]
    )
    assert store.read_log(OK, OK_ATTEMPT) == b"written by main\n"
    assert store.meta()["backend"] == "local" and store.read_elements().params == [{"x": 1}, {"x": 2}]
    live = store.progress()
    assert live.final and live.counts["failed"] == 1 and live.running_now() is None
    assert store.run_ids() == [OLD_RUN]
    summary = store.run_summary(OLD_RUN)
    assert summary.is_run and summary.count("succeeded") == 1 and summary.errors == ("1 x ValueError: two",)


def test_luigi_flag_is_read_from_an_old_summary_and_written_to_its_own_key(main_bucket):
    store = open_job(os.path.join(main_bucket, "old"))
    assert store.elements_shown(OLD_RUN)  # main merged the flag into the run summary
    new_run = naming.new_run_id()
    assert not store.elements_shown(new_run)
    store.mark_elements_shown(new_run)
    assert store.elements_shown(new_run) and store.run_ids() == [OLD_RUN]  # the flag is not a run
    assert os.path.exists(os.path.join(main_bucket, "old", naming.luigi_flag_key(new_run)))
    assert naming.is_job_key(naming.luigi_flag_key(new_run))  # `kubeface cleanup --blobs` deletes it


def test_the_job_state_of_a_main_bucket(main_bucket):
    state = JobState(open_job("old", main_bucket)).refresh()
    assert [e.state for e in state.elements()] == ["done", "failed"]
    assert state.elements()[1].error == "ValueError: two" and state.last_dispatch.run == OLD_RUN
    assert state.live.final and not state.unreadable


def test_a_run_summary_round_trips_through_the_store(tmp_path):
    store = JobStore.at(str(tmp_path), "j")
    summary = RunSummary("20300101T000000Z-aa", 1.0, 2.0, "budget spent", ("2 x E: m",), {"total": 2, "failed": 2})
    store.write_run_summary(summary)
    assert store.run_summary(summary.run) == summary and store.run_summary("20300101T000000Z-bb") is None
    (tmp_path / "j" / naming.dispatch_key("20300101T000000Z-cc")).write_text("[]")
    with pytest.raises(UnreadableRecordError, match="holds a JSON list, not a record"):
        store.run_summary("20300101T000000Z-cc")


def test_the_last_run_is_the_one_that_started_last_even_within_one_second(tmp_path):
    store = JobStore.at(str(tmp_path), "j")
    store.write_meta({"job": "j", "elements": 1})
    store.write_elements([])
    later, earlier = "20300101T000000Z-00aa", "20300101T000000Z-ffbb"  # ids of one second sort by chance
    store.write_run_summary(RunSummary(earlier, 10.0, 11.0, counts={"total": 1, "failed": 1}))
    store.write_run_summary(RunSummary(later, 10.5, 11.5, counts={"total": 1, "succeeded": 1}))
    assert JobState(store).refresh().last_dispatch.run == later


def test_resolve_tells_urls_from_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("gs://bucket/prefix/job", None) == ("gs://bucket/prefix", "job")
    assert resolve("./job/", None) == (str(tmp_path), "job") and resolve("sub/job", None) == (
        str(tmp_path / "sub"),
        "job",
    )
    assert resolve("job", "rel") == (str(tmp_path / "rel"), "job")
    asked = []
    assert resolve("job", lambda: asked.append(1) or "gs://b/p") == ("gs://b/p", "job") and asked == [1]
    assert resolve("gs://b/p/job", lambda: asked.append(2)) == ("gs://b/p", "job") and asked == [1]  # not asked
    assert is_job_url(".hidden") and not is_job_url("job-1")
    with pytest.raises(JobNotFoundError, match="is an id but no storage root is set"):
        resolve("job", None)
    with pytest.raises(JobNotFoundError, match="does not name a job"):
        resolve("gs://b/p/bad id", None)
    with pytest.raises(JobNotFoundError, match="no job nothing: .* has no job.json"):
        open_job("nothing", str(tmp_path))


def test_list_jobs_finds_jobs_and_names_what_it_skips(main_bucket):
    os.makedirs(os.path.join(main_bucket, "not-a-job"))  # no job.json: not listed, not warned about
    os.makedirs(os.path.join(main_bucket, "bad id"))
    os.makedirs(os.path.join(main_bucket, "torn"))
    with open(os.path.join(main_bucket, "torn", "job.json"), "w") as f:
        f.write("{not json")
    skipped = []
    jobs = {j.job_id: j for j in list_jobs(main_bucket, on_skip=skipped.append)}
    assert sorted(jobs) == ["old", "torn"]
    assert jobs["old"].latest == 1795975388.0  # its last run finished after job.json and progress.json
    assert jobs["old"].meta.code_version == VERSION
    assert jobs["torn"].meta.get("unreadable") and jobs["torn"].latest == 0
    assert len(skipped) == 1 and "bad id" in skipped[0] and "not a usable job" in skipped[0]


def test_a_job_with_no_function_reads_through_its_store(tmp_path, make_client):
    results = make_client().map(abs, [-2, 3], job_id="abs")
    store = open_job("abs", str(tmp_path))
    assert store.finished() == set(results.keys) and store.code_version == results.job.code_version
    (run,) = store.run_ids()
    assert store.run_summary(run).count("succeeded") == 2
