"""How an attempt ended, decided: the engine's whole decision table as pure functions (the verdict,
the record the master writes for it, retry or fail for good), with the failure-budget rule beside it.

Everything here is a function of what the master saw (the backend's AttemptEnd, the runner's record,
whether the result checked out, a timeout) and the settings: no storage, no backend, no clock, so
each row of the table is one call in tests/engine/. The engine reads storage, asks here, and carries out
the answer.
"""

import random
from dataclasses import dataclass
from typing import Optional, Union

from ..bucket.records import Outcome, master_record, outcome_of
from ..terminal import strip_controls

# If this many elements failed for good and none succeeded yet, the function is broken: stop.
ALL_FAILED_STOP = 10
# Attempts of one element the infrastructure may interrupt (evictions, lost nodes) before it fails.
MAX_INTERRUPTIONS = 5
# Runner errors that every element would hit alike: the job stops at the first one.
FATAL_RUNNER_ERRORS = ("VersionMismatchError", "EnvironmentMismatchError", "SigningKeyError")
# Characters of an attempt's last output kept in its failure message.
LOG_TAIL = 2000


@dataclass
class Failure:
    """Why an element's attempt failed, in the words the user needs."""

    error_type: str
    message: str
    traceback: str = ""
    retryable: bool = True
    fatal: bool = False  # stops the whole job: every element would fail alike

    def __post_init__(self):  # from an unsigned record or an attempt's output: the master logs and raises it
        self.error_type, self.message, self.traceback = map(
            strip_controls, (self.error_type, self.message, self.traceback)
        )


@dataclass(frozen=True)
class Succeeded:
    """The element's result is in storage and checked out."""


@dataclass(frozen=True)
class Requeue:
    """The infrastructure stopped the attempt: run it again at once, not counted against its retries."""

    error_type: str
    reason: str
    more_memory: bool = False  # it ran out of memory; the backend gives the next attempt more

    @property
    def outcome(self):
        """The master's record of the attempt: an OOM is lost work, anything else an interruption."""
        return Outcome.LOST if self.more_memory else Outcome.INTERRUPTED

    @property
    def charged_as(self):
        """The cost category of the attempt: an OOM that grows is retried work, an interruption preempted."""
        return "retried" if self.more_memory else "preempted"


@dataclass(frozen=True)
class Failed:
    """The attempt failed; the element is retried, fails for good, or stops the job (failure.fatal).

    master_outcome: the record the master writes for it (None: the runner's record stands);
    runner_record: the runner's record, whose fields a RESULT_REFUSED record keeps, or the runner's
    "stopped by SIGTERM" record that the master's account replaces.
    """

    failure: Failure
    master_outcome: Optional[Outcome] = None
    runner_record: Optional[dict] = None


Verdict = Union[Succeeded, Requeue, Failed]


def failure_from_record(record):
    """The failure a runner's record (outcome other than success) tells."""
    outcome = record.get("outcome")
    if outcome == Outcome.UNUSABLE_INPUT:
        # A function or code that cannot be loaded fails every element alike: stop at the first.
        fatal = record.get("error_type", "").endswith(FATAL_RUNNER_ERRORS) or record.get("stage") == "function"
        return Failure(
            record.get("error_type", "UnusableInput"),
            record.get("message", ""),
            record.get("traceback", ""),
            retryable=False,
            fatal=fatal,
        )
    return Failure(record.get("error_type", "Error"), record.get("message", ""), record.get("traceback", ""))


def cancelled_by_another_master(record):
    return outcome_of(record) is Outcome.CANCELLED and record.get("recorded_by") == "master"


def stopped_by_sigterm(record):
    """The runner's own record that a SIGTERM stopped it: it knows no more, the infrastructure's end tells why."""
    return outcome_of(record) is Outcome.INTERRUPTED and record.get("recorded_by") != "master"


def judge(end, record, settings, checked=False, refused=None, timed_out=False, interruptions=0):
    """The verdict on one attempt of an element.

    end: the backend's AttemptEnd (None after a timeout); record: the runner's record (None: none or
    unreadable); checked: its result checked out; refused: the error that refused its result;
    interruptions: how often the infrastructure already interrupted this element.
    """
    if checked:
        return Succeeded()
    if cancelled_by_another_master(record) and end is not None:
        # Another master cancelled it (this one stops following what it cancels): not the element's failure.
        record, end = (
            None,
            type(end)(
                attempt=end.attempt,
                exit_code=None,
                error_type="Cancelled",
                interrupted=True,
                reason="cancelled by another master: %s" % record.get("message", ""),
            ),
        )
    stopped = record if stopped_by_sigterm(record) else None
    if stopped is not None:
        record = None
    if refused is None and record is None and end is not None and end.interrupted and interruptions < MAX_INTERRUPTIONS:
        return Requeue(end.error_type or "Interrupted", end.reason)
    if refused is None and record is None and end is not None and end.more_memory:
        return Requeue(end.error_type or "OutOfMemory", end.reason, more_memory=True)
    failure = _failure(end, record, refused, timed_out, interruptions, settings)
    if refused is not None:  # the runner's record said success: the master's verdict goes over it
        return Failed(failure, Outcome.RESULT_REFUSED, record)
    if record is None:  # the runner could not write one (or only that SIGTERM stopped it): the master's account
        return Failed(failure, Outcome.TIMEOUT if timed_out else Outcome.LOST, stopped)
    return Failed(failure)


def master_account(verdict, key, attempt, account, placement):
    """The record the master writes of an attempt it judged, as (record, if_absent), or None where the
    runner's record stands. account: its resources and times; placement: what the backend says it had.

    if_absent: written only where the runner left none (a runner's record that SIGTERM stopped is replaced);
    a refused result's record keeps the runner's fields under the master's verdict.
    """
    if isinstance(verdict, Requeue):
        return master_record(
            key, attempt, verdict.outcome, verdict.error_type, verdict.reason, **account, **placement
        ), True
    if not isinstance(verdict, Failed) or verdict.master_outcome is None:
        return None
    failure = verdict.failure
    if verdict.master_outcome is Outcome.RESULT_REFUSED:
        return {
            **(verdict.runner_record or {}),
            **master_record(key, attempt, Outcome.RESULT_REFUSED, failure.error_type, failure.message),
        }, False
    return master_record(
        key, attempt, verdict.master_outcome, failure.error_type, failure.message, **account, **placement
    ), verdict.runner_record is None


# What becomes of an element whose attempt failed (after_failure).
STOP, RETRY, FAIL = "stop the job", "retry", "fail for good"


def after_failure(failure, failed_attempts, settings):
    """STOP (every element would fail alike), RETRY (later, see retry_delay) or FAIL (for good)."""
    if failure.fatal:
        return STOP
    if failure.retryable and failed_attempts < settings.retries:
        return RETRY
    return FAIL


def _failure(end, record, refused, timed_out, interruptions, settings):
    """The decision table for an attempt with no result: the first row that applies says why."""
    if refused is not None:
        return Failure(type(refused).__name__, str(refused))
    if timed_out:
        return Failure(
            "Timeout",
            "the attempt ran longer than element_timeout=%gs and was killed; "
            "raise [kubeface] element_timeout if elements need longer" % settings.element_timeout,
        )
    if record and record.get("outcome") != Outcome.SUCCESS:
        return failure_from_record(record)
    if end is not None and end.error_type:
        message = end.reason
        if end.interrupted:
            message = (
                "interrupted %d times by the infrastructure, over the budget of %d interruptions per element "
                "(MAX_INTERRUPTIONS); the last time: %s" % (interruptions + 1, MAX_INTERRUPTIONS, message)
            )
        return Failure(end.error_type, _with_tail(message, end), retryable=end.retryable, fatal=end.fatal)
    if end is not None and end.exit_code == 0:
        return Failure("MissingResult", "the attempt exited successfully but its result is not in storage")
    reason = end.reason if end is not None else "the attempt ended"
    message = _with_tail("%s before reporting an outcome" % reason, end)
    return Failure("AttemptLost", message, fatal=bool(end and end.fatal), retryable=not (end and end.fatal))


def _with_tail(message, end):
    if end is not None and end.log_tail.strip():
        return message + "; last output:\n" + end.log_tail.strip()[-LOG_TAIL:]
    return message


def retry_delay(failed_attempts, settings):
    """Seconds before the next attempt of an element that failed failed_attempts times: doubling, capped, jittered."""
    delay = min(settings.retry_backoff * 2 ** (failed_attempts - 1), settings.max_retry_backoff)
    return delay * random.uniform(0.8, 1.2)


def budget_spent(progress, settings):
    """Why the job stops for its failures, or "" while it goes on."""
    if progress.failed > settings.failure_budget * progress.total:
        return "%d of %d elements failed for good, more than the failure budget of %g%%" % (
            progress.failed,
            progress.total,
            100 * settings.failure_budget,
        )
    if progress.failed >= ALL_FAILED_STOP and progress.succeeded == 0:
        return "the first %d elements to finish all failed" % progress.failed
    return ""
