"""The decision table as pure calls: judge() on what the master saw, retry_delay() and budget_spent()."""

import pytest

from luigi_kubeface.backends import AttemptEnd
from luigi_kubeface.master.engine import Progress
from luigi_kubeface.errors import CorruptBlobError
from luigi_kubeface.master.judge import (
    ALL_FAILED_STOP,
    MAX_INTERRUPTIONS,
    Failed,
    Requeue,
    Succeeded,
    budget_spent,
    judge,
    retry_delay,
)
from luigi_kubeface.bucket.records import Outcome
from luigi_kubeface.settings import Settings

SETTINGS = Settings(
    storage_root="/tmp", element_timeout=7.0, retry_backoff=10.0, max_retry_backoff=60.0, failure_budget=0.2
)
EVICTED = AttemptEnd("a", None, reason="evicted", error_type="Evicted", interrupted=True)
ANOTHER_MASTER = {"outcome": "cancelled", "recorded_by": "master", "message": "stopped"}
SIGTERMED = {"outcome": "interrupted", "error_type": "Terminated", "message": "stopped by SIGTERM"}  # the runner's

ROWS = [  # (end, record, keywords) -> (verdict type, error_type, master outcome, retryable, fatal)
    (None, None, {"checked": True}, (Succeeded, None, None, None, None)),
    (
        AttemptEnd("a", 0),
        {"outcome": "success"},
        {"refused": CorruptBlobError("bad")},
        (Failed, "CorruptBlobError", Outcome.RESULT_REFUSED, True, False),
    ),
    (EVICTED, None, {}, (Requeue, "Evicted", None, None, None)),
    (EVICTED, None, {"interruptions": MAX_INTERRUPTIONS}, (Failed, "Evicted", Outcome.LOST, True, False)),
    (EVICTED, {"outcome": "error", "error_type": "KeyError"}, {}, (Failed, "KeyError", None, True, False)),
    (AttemptEnd("a", 137), ANOTHER_MASTER, {}, (Requeue, "Cancelled", None, None, None)),
    (
        AttemptEnd("a", 137),
        ANOTHER_MASTER,
        {"interruptions": MAX_INTERRUPTIONS},
        (Failed, "Cancelled", Outcome.LOST, True, False),
    ),
    (None, None, {"timed_out": True}, (Failed, "Timeout", Outcome.TIMEOUT, True, False)),
    # A runner stopped by SIGTERM knows only that: the infrastructure's end or the master's clock says why.
    (EVICTED, SIGTERMED, {}, (Requeue, "Evicted", None, None, None)),
    (None, SIGTERMED, {"timed_out": True}, (Failed, "Timeout", Outcome.TIMEOUT, True, False)),
    (
        AttemptEnd("a", 143, reason="deadline", error_type="DeadlineExceeded"),
        SIGTERMED,
        {},
        (Failed, "DeadlineExceeded", Outcome.LOST, True, False),
    ),
    (
        AttemptEnd("a", 1),
        {"outcome": "error", "error_type": "ValueError"},
        {},
        (Failed, "ValueError", None, True, False),
    ),
    (
        AttemptEnd("a", 2),
        {"outcome": "unusable_input", "stage": "input", "error_type": "E"},
        {},
        (Failed, "E", None, False, False),
    ),
    (
        AttemptEnd("a", 2),
        {"outcome": "unusable_input", "stage": "function", "error_type": "E"},
        {},
        (Failed, "E", None, False, True),
    ),
    (
        AttemptEnd("a", 2),
        {"outcome": "unusable_input", "stage": "input", "error_type": "x.SigningKeyError"},
        {},
        (Failed, "x.SigningKeyError", None, False, True),
    ),
    (
        AttemptEnd("a", None, reason="no fit", error_type="Unschedulable", retryable=False),
        None,
        {},
        (Failed, "Unschedulable", Outcome.LOST, False, False),
    ),
    (
        AttemptEnd("a", None, reason="no image", error_type="ErrImagePull", fatal=True),
        None,
        {},
        (Failed, "ErrImagePull", Outcome.LOST, True, True),
    ),
    (AttemptEnd("a", 0), None, {}, (Failed, "MissingResult", Outcome.LOST, True, False)),
    (AttemptEnd("a", 0), {"outcome": "success"}, {}, (Failed, "MissingResult", None, True, False)),
    (AttemptEnd("a", 137, reason="killed"), None, {}, (Failed, "AttemptLost", Outcome.LOST, True, False)),
    (AttemptEnd("a", None, reason="gone", fatal=True), None, {}, (Failed, "AttemptLost", Outcome.LOST, False, True)),
]


@pytest.mark.parametrize("end, record, keywords, expected", ROWS)
def test_judge(end, record, keywords, expected):
    verdict = judge(end, record, SETTINGS, **keywords)
    kind, error_type, outcome, retryable, fatal = expected
    assert type(verdict) is kind
    if kind is Requeue:
        assert verdict.error_type == error_type
    if kind is Failed:
        f = verdict.failure
        assert (f.error_type, verdict.master_outcome, f.retryable, f.fatal) == (error_type, outcome, retryable, fatal)


def test_a_refused_result_keeps_the_runners_record_and_a_timeout_names_the_setting():
    record = {"outcome": "success", "result_bytes": 9}
    assert judge(AttemptEnd("a", 0), record, SETTINGS, refused=CorruptBlobError("bad")).runner_record == record
    assert "element_timeout=7s" in judge(None, None, SETTINGS, timed_out=True).failure.message


def test_retry_delay_doubles_up_to_its_cap_with_jitter():
    for failed, base in [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (9, 60.0)]:
        assert 0.8 * base <= retry_delay(failed, SETTINGS) <= 1.2 * base


@pytest.mark.parametrize(
    "total, succeeded, failed, stops",
    [
        (10, 0, 2, ""),
        (10, 0, 3, "3 of 10 elements failed for good, more than the failure budget of 20%"),
        (1000, 0, ALL_FAILED_STOP, "the first %d elements to finish all failed" % ALL_FAILED_STOP),
        (1000, 1, ALL_FAILED_STOP, ""),
    ],
)
def test_budget_spent(total, succeeded, failed, stops):
    assert budget_spent(Progress(total=total, succeeded=succeeded, failed=failed), SETTINGS) == stops
