"""Each record type reads back what it writes, and reads what earlier versions wrote."""

import json

import pytest

from luigi_kubeface.bucket.records import (
    FAILED,
    AttemptRecord,
    ElementIndex,
    JobMeta,
    LiveProgress,
    Outcome,
    RunSummary,
    elements_shown,
    luigi_flag,
    master_record,
    outcome_of,
)


def test_attempt_record_round_trip_keeps_every_field_and_types_the_outcome():
    record = AttemptRecord.begin("k" * 24, "001-1-abc", host="h", started=1.0, python="3.11")
    record.end(Outcome.SUCCESS, result_bytes=10, summary={"score": 1.5}, finished=2.0)
    back = AttemptRecord.from_json(record.to_json())
    assert back == record and back.outcome is Outcome.SUCCESS and not back.failed and not back.by_master
    assert json.loads(record.to_json())["outcome"] == "success"  # the bucket holds the plain value


def test_attempt_records_of_unknown_or_missing_outcomes_read_as_none():
    assert AttemptRecord.from_json(b'{"outcome": "from-the-future", "extra": 1}').outcome is None
    assert AttemptRecord.from_json(b"{}").outcome is None and outcome_of(None) is None
    with pytest.raises(ValueError):
        AttemptRecord.from_json(b"[1]")


def test_master_records_are_attempt_records_that_say_so():
    record = master_record("e", "a", "lost", "AttemptLost", "gone", started_by_master=3.0)
    assert record.by_master and record.failed and record.outcome is Outcome.LOST
    assert list(record)[-1] == "recorded_by" and record["traceback"] == ""
    assert {o.value for o in FAILED} == {"error", "unusable_input", "lost", "timeout"}


def test_run_summary_round_trip_and_the_layout_main_wrote():
    summary = RunSummary(
        "20240101T000000Z-ab",
        1.0,
        2.0,
        "",
        ("1 x ValueError: bad",),
        {"total": 3, "reused": 1, "succeeded": 1, "failed": 1},
    )
    data = json.loads(summary.to_json())
    assert data == {
        "run": "20240101T000000Z-ab",
        "started": 1.0,
        "finished": 2.0,
        "stopped": "",
        "errors": ["1 x ValueError: bad"],
        "total": 3,
        "reused": 1,
        "succeeded": 1,
        "failed": 1,
    }
    assert RunSummary.from_json(summary.to_json()) == summary
    # main's map task merged its flag into the summary: it is no count
    old = RunSummary.from_json(dict(data, elements_shown=True))
    assert old == summary and old.is_run and old.count("failed") == 1 and old.count("speculated") == 0
    flag_only = RunSummary.from_json({"elements_shown": True})  # main's bookkeeping-only record
    assert not flag_only.is_run


def test_luigi_flag_and_its_old_place():
    assert elements_shown(luigi_flag("r")) and json.loads(luigi_flag("r")) == {"run": "r", "elements_shown": True}
    assert elements_shown({"run": "r", "started": 1, "elements_shown": True})  # in a summary written by main
    assert not elements_shown({"run": "r", "started": 1})


class _Progress:  # what the engine's Progress offers a LiveProgress
    running_attempts = {"001-1-a": ("k", 5.0)}

    @staticmethod
    def counts():
        return {"total": 2, "running": 1}


def test_live_progress_round_trip_and_when_it_counts_as_running():
    live = LiveProgress.of_progress(_Progress, final=False, now=100.0)
    data = json.loads(live.to_json())
    assert data == {
        "updated": 100.0,
        "final": False,
        "counts": {"total": 2, "running": 1},
        "running": {"001-1-a": ["k", 5.0]},
    }
    back = LiveProgress.from_json(live.to_json())
    assert back == live and back.running_now(now=101.0) == {"001-1-a": ("k", 5.0)}
    assert back.running_now(max_age=300, now=500.0) is None  # silent too long: its master stopped
    final = LiveProgress.of_progress(_Progress, final=True, now=100.0)
    assert final.running == {} and final.running_now(now=100.0) is None
    assert LiveProgress.from_json(b'{"running": {"a": "garbage"}}').running == {}


def test_job_meta_reads_what_main_wrote_and_jobs_from_before_code_versions():
    meta = JobMeta.from_json(
        b'{"job": "old", "code_version": "e22dd215ac649982", "reuse_results": "same_code", '
        b'"updated": 1795975387.6, "backend": "local"}'
    )
    assert meta.code_version == "e22dd215ac649982" and not meta.reuse_any and meta.updated == 1795975387.6
    assert JobMeta.from_json(meta.to_json()) == meta
    ancient = JobMeta({"job": "x"})
    assert ancient.reuse_any and ancient.code_version == "" and ancient.updated == 0


def test_element_index_round_trip_and_old_or_altered_grids():
    index = ElementIndex(["a", "b"], ["1", "2"], [{"x": 1}, {"x": 2}])
    assert ElementIndex.from_json(index.to_json()) == index
    assert ElementIndex.from_json(b'{"keys": ["a"], "labels": ["1"]}').params == [{}]  # before parameters were kept
    assert ElementIndex.from_json(b"{}") == ElementIndex([], [], [])
    with pytest.raises(ValueError, match="lacks its keys and labels"):
        ElementIndex.from_json(b'{"keys": ["a"], "labels": []}')
