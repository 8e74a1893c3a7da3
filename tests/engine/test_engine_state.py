"""The engine's derived state stays derived, and judge() takes every decision, Succeeded too.

progress.pending is counted from the run's queues, never stored; judge(), master_account() and
after_failure() are the whole decision table, called by the engine on every attempt that ended.
"""

from collections import deque

import pytest

from luigi_kubeface.backends import AttemptEnd
from luigi_kubeface.backends.simulated import End, error_record
from luigi_kubeface.bucket.records import Outcome
from luigi_kubeface.errors import CorruptBlobError
from luigi_kubeface.master import attempt_ends
from luigi_kubeface.master.judge import (
    FAIL,
    MAX_INTERRUPTIONS,
    RETRY,
    STOP,
    Failed,
    Failure,
    Requeue,
    Succeeded,
    after_failure,
    judge,
    master_account,
)
from luigi_kubeface.master.report import Progress
from luigi_kubeface.settings import Settings
from test_engine_table import run

SETTINGS = Settings(storage_root="/tmp", element_timeout=7.0, retries=2)
EVICTED = AttemptEnd("a", None, reason="evicted", error_type="Evicted", interrupted=True)
ERROR = {"outcome": "error", "error_type": "ValueError", "message": "bad"}


def test_pending_cannot_be_stored_it_is_counted_from_the_runs_queues():
    """A count kept by hand drifts from the queues it counts: the five hand-kept updates are gone for good."""
    todo, retry_at = deque(["a", "b"]), [(1.0, 1, "c")]
    progress = Progress(total=5, waiting=(todo, retry_at))
    assert progress.pending == 3
    todo.popleft()
    assert progress.pending == 2 and progress.counts()["pending"] == 2
    with pytest.raises(AttributeError):
        progress.pending = 7


def test_every_element_is_pending_in_flight_or_done_at_each_progress_report(tmp_path):
    """pending counts the queue and the retries waiting: with the rest it accounts for every element, always."""
    seen = []

    def report(progress):
        seen.append(
            (progress.pending, progress.running + progress.starting, progress.done + progress.failed, progress.total)
        )

    script = {(item, 1): End(1, record=error_record()) for item in range(0, 9, 3)}
    _, _, result = run(tmp_path, script, n=9, retries=1, on_progress=report, max_in_flight=2)
    assert result.progress.succeeded == 9 and result.progress.retried == 3
    assert seen and all(pending + flying + finished == total for pending, flying, finished, total in seen), seen
    assert seen[-1] == (0, 0, 9, 9)


def test_the_engine_asks_judge_about_every_attempt_that_ended_successes_too(tmp_path, monkeypatch):
    """Before, a result that checked out was decided in the engine and judge(checked=True) never ran."""
    asked = []

    def judging(end, record, settings, **seen):
        verdict = judge(end, record, settings, **seen)
        asked.append((seen["checked"], type(verdict)))
        return verdict

    monkeypatch.setattr(attempt_ends, "judge", judging)
    _, _, report = run(tmp_path, {(1, 1): End(1, record=error_record())}, n=3, retries=1)
    assert report.progress.succeeded == 3
    assert sorted(asked, key=repr) == sorted([(True, Succeeded)] * 3 + [(False, Failed)], key=repr)


CHECKED = [  # whatever else the master saw, a result that checked out is a success
    (AttemptEnd("a", 0), {"outcome": "success"}, {}),
    (AttemptEnd("a", 1), ERROR, {}),
    (EVICTED, None, {"interruptions": MAX_INTERRUPTIONS}),
    (None, None, {"timed_out": True}),  # the result came, the exit was late
    (AttemptEnd("a", None, reason="no image", error_type="ErrImagePull", fatal=True), None, {}),
]


@pytest.mark.parametrize("end, record, keywords", CHECKED)
def test_judge_decides_succeeded_for_a_result_that_checked_out(end, record, keywords):
    assert judge(end, record, SETTINGS, checked=True, **keywords) == Succeeded()
    assert type(judge(end, record, SETTINGS, **keywords)) is not Succeeded


ACCOUNTS = [  # verdict -> (outcome the master records or None, if_absent, fields of the runner's kept)
    (Succeeded(), (None, None, False)),
    (Failed(Failure("ValueError", "bad")), (None, None, False)),  # the runner's record stands
    (Requeue("Evicted", "evicted"), (Outcome.INTERRUPTED, True, False)),
    (Requeue("OOMKilled", "out of memory", more_memory=True), (Outcome.LOST, True, False)),
    (Failed(Failure("AttemptLost", "gone"), Outcome.LOST), (Outcome.LOST, True, False)),
    (Failed(Failure("Timeout", "slow"), Outcome.TIMEOUT, {"outcome": "interrupted"}), (Outcome.TIMEOUT, False, False)),
    (
        Failed(Failure("CorruptBlobError", "bad"), Outcome.RESULT_REFUSED, {"outcome": "success", "result_bytes": 9}),
        (Outcome.RESULT_REFUSED, False, True),
    ),
]


@pytest.mark.parametrize("verdict, expected", ACCOUNTS)
def test_master_account_says_which_record_the_master_writes(verdict, expected):
    written = master_account(verdict, "k", "a-1", {"duration": 1.5}, {"spot": True})
    outcome, if_absent, keeps_runners = expected
    if outcome is None:
        assert written is None
        return
    record, absent_only = written
    assert (record["outcome"], record["recorded_by"], absent_only) == (outcome.value, "master", if_absent)
    assert ("result_bytes" in record) == keeps_runners
    assert ("duration" in record) == (not keeps_runners)


@pytest.mark.parametrize(
    "failure, failed_attempts, step",
    [
        (Failure("E", "m"), 0, RETRY),
        (Failure("E", "m"), 2, FAIL),
        (Failure("E", "m", retryable=False), 0, FAIL),
        (Failure("E", "m", fatal=True), 0, STOP),
        (Failure("E", "m", retryable=False, fatal=True), 0, STOP),
    ],
)
def test_after_failure_retries_fails_for_good_or_stops_the_job(failure, failed_attempts, step):
    assert after_failure(failure, failed_attempts, SETTINGS) == step


def test_a_refused_result_is_failed_even_when_the_runner_said_success():
    verdict = judge(AttemptEnd("a", 0), {"outcome": "success"}, SETTINGS, refused=CorruptBlobError("bad"))
    assert type(verdict) is Failed and verdict.master_outcome is Outcome.RESULT_REFUSED
