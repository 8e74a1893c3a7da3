"""The engine: runs a job's unfinished elements on a backend until each succeeds or fails for good.

It caps attempts in flight, retries with backoff, kills attempts past their timeout, stops early
when the failure budget is spent, and reuses every result already in storage. It knows nothing of
Luigi, Kubernetes or GCS: a backend runs attempts, the job's storage holds the truth.
"""

import bisect
import heapq
import logging
import random
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from . import naming
from .backends import AttemptEnd, AttemptSpec
from .errors import BlobNotFoundError, CorruptBlobError, UnreadableRecordError
from .lease import JobLease

log = logging.getLogger(__name__)

# If this many elements failed for good and none succeeded yet, the function is broken: stop.
ALL_FAILED_STOP = 10
# Attempts of one element the infrastructure may interrupt (evictions, lost nodes) before it fails.
MAX_INTERRUPTIONS = 5
# Runner errors that every element would hit alike: the job stops at the first one.
FATAL_RUNNER_ERRORS = ("VersionMismatchError", "EnvironmentMismatchError", "SigningKeyError")


@dataclass
class Failure:
    """Why an element's attempt failed, in the words the user needs."""

    error_type: str
    message: str
    traceback: str = ""
    retryable: bool = True
    fatal: bool = False  # stops the whole job: every element would fail alike


@dataclass
class Progress:
    total: int = 0
    reused: int = 0
    pending: int = 0
    running: int = 0
    starting: int = 0  # launched, waiting for a slot or a node (a pod not yet running)
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    speculated: int = 0  # backup attempts launched for stragglers
    # Read-only live view for status pages: attempt id -> (element key, wall-clock start time).
    running_attempts: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self):
        return self.reused + self.succeeded

    def describe(self):
        return ("%d elements: %d reused, %d succeeded, %d running, %d pending, %d failed, %d retried, %d speculated"
                % (self.total, self.reused, self.succeeded, self.running, self.pending + self.starting, self.failed,
                   self.retried, self.speculated))

    def counts(self):
        """The counts alone (what a dispatch summary records)."""
        return {k: v for k, v in vars(self).items() if k != "running_attempts"}


@dataclass
class JobReport:
    progress: Progress
    failures: dict = field(default_factory=dict)  # element key -> Failure (failed for good)
    stopped: str = ""  # why the job stopped early, if it did
    not_run: list = field(default_factory=list)  # element keys never finished because of the stop

    def summary(self):
        """The distinct errors, most frequent first, so 500 identical failures read as one line."""
        counts, example = Counter(), {}
        for f in self.failures.values():
            first_line = f.message.splitlines()[0] if f.message else ""
            kind = (f.error_type, re.sub(r"\d+", "N", _NAMES.sub("NAME", first_line)))  # other elements, pods
            counts[kind] += 1
            example.setdefault(kind, first_line)
        lines = ["%d x %s: %s" % (n, kind[0], example[kind]) for kind, n in counts.most_common(10)]
        if len(counts) > 10:
            lines.append("... and %d more distinct errors" % (len(counts) - 10))
        return lines


# Generated names (pods, attempts: kf-job-3f2a-1-x7k2q) differ between otherwise equal errors.
_NAMES = re.compile(r"\b[a-z0-9]+(?:-[a-z0-9]+){2,}\b")


@dataclass
class _Flight:
    element: object
    attempt: str
    number: int
    started: float


def failure_from_record(record):
    outcome = record.get("outcome")
    if outcome == "unusable_input":
        # A function or code that cannot be loaded fails every element alike: stop at the first.
        fatal = record.get("error_type", "").endswith(FATAL_RUNNER_ERRORS) or record.get("stage") == "function"
        return Failure(record.get("error_type", "UnusableInput"), record.get("message", ""),
                       record.get("traceback", ""), retryable=False, fatal=fatal)
    return Failure(record.get("error_type", "Error"), record.get("message", ""), record.get("traceback", ""))


def _readable_record(job, key, attempt):
    """The attempt's record, or None when there is none or it does not parse (the master writes its own)."""
    try:
        return job.attempt_record(key, attempt)
    except UnreadableRecordError as error:
        log.warning("%s", error)
        return None


def run_job(job, backend, settings, on_progress=None, clock=time.monotonic, sleep=time.sleep, run_id=None):
    """Run every element of job that has no result yet; return a JobReport (never raises for element failures).

    Only the holder of the job's lease launches anything: a second master waits for the first, then
    runs what is still missing (usually nothing), and adopts attempts only from a master whose lease lapsed.
    """
    versions = job.result_versions()  # one listing serves this check and the run, unless we waited
    if not set(e.key for e in job.elements) - job.finished(versions):
        return _run_leased(job, backend, settings, on_progress, clock, sleep, None, versions)
    lease = JobLease(job.storage, settings.lease_seconds, run_id)

    def waiting(holder):
        done = len(set(e.key for e in job.elements) & job.finished())
        log.info("job %s: %d of %d elements done; run %s (%s, pid %s) is running the rest", job.id, done,
                 len(job.elements), holder.get("run", "?"), holder.get("host", "?"), holder.get("pid", "?"))

    waited = lease.acquire(on_wait=waiting, sleep=sleep)
    try:  # after a wait, the other master's results are in: list again
        return _run_leased(job, backend, settings, on_progress, clock, sleep, lease, None if waited else versions)
    finally:
        lease.release()


def _run_leased(job, backend, settings, on_progress, clock, sleep, lease, versions=None):
    progress = Progress(total=len(job.elements))
    versions = job.result_versions() if versions is None else versions
    finished = job.finished(versions)
    todo = deque(e for e in job.elements if e.key not in finished)
    progress.reused = progress.total - len(todo)
    progress.pending = len(todo)
    report = JobReport(progress)
    if not todo:
        return report
    log.info("job %s: %d elements, %d already done, %d to run", job.id, progress.total, progress.reused, len(todo))
    stale = [e.key for e in todo if versions.get(e.key)]
    if stale:
        unversioned = sum(1 for k in stale if versions[k] == {""})
        log.info("job %s: %d of them have results of other code (code version %s now%s): recomputing them; pin "
                 "code_version() (Client.map: code_version=) or set [kubeface] reuse_results = any to keep them",
                 job.id, len(stale), job.code_version,
                 ", %d written before code versions" % unversioned if unversioned else "")

    in_flight = {}
    attempts = Counter()
    interruptions = Counter()
    failed_attempts = Counter()
    running_of = {}  # element key -> its attempts in flight (two while a backup runs)
    backed_up, won = set(), set()  # elements given a backup; elements whose result came this run
    durations = []  # sorted durations of the successful attempts, for the median
    to_run = len(todo)
    retry_at = []  # heap of (time, sequence, element)
    sequence = 0
    last_progress = None
    timeout = settings.element_timeout + backend.timeout_slack

    adopted = backend.adopt(job)  # attempts an earlier master left running: follow, do not duplicate
    if adopted:
        for element in [e for e in todo if e.key in adopted]:
            attempt = adopted.pop(element.key)
            attempts[element.key] = naming.attempt_number(attempt)
            in_flight[attempt] = _Flight(element, attempt, attempts[element.key], clock())
            running_of[element.key] = {attempt}
        todo = deque(e for e in todo if e.key not in {f.element.key for f in in_flight.values()})
        progress.pending = len(todo)
        for attempt in adopted.values():  # their elements are done already, or no longer in the grid
            backend.cancel(attempt)

    def fail_for_good(element, failure):
        report.failures[element.key] = failure
        progress.failed += 1
        log.warning("element %s (%s) failed for good: %s: %s", element.key, element.label, failure.error_type, failure.message)

    def attempt_ended(flight, end=None, timed_out=False):
        nonlocal sequence
        element = flight.element
        refused = None
        try:  # one read per result, as the exists() it replaces: the master never trusts an unchecked blob
            job.check_result(element.key)  # also after a timeout: the result may be written, the exit late
            progress.succeeded += 1
            return True
        except BlobNotFoundError:
            pass
        except CorruptBlobError as error:  # moved aside by check_result: this element runs again
            refused = error
        record = None if timed_out else _readable_record(job, element.key, flight.attempt)
        if record and record.get("outcome") == "cancelled" and record.get("recorded_by") == "master":
            # Another master cancelled it (this one stops following what it cancels): not the element's failure.
            record, end = None, AttemptEnd(flight.attempt, None, "cancelled by another master: %s"
                                           % record.get("message", ""), error_type="Cancelled", interrupted=True)
        if (refused is None and record is None and end is not None and end.interrupted
                and interruptions[element.key] < MAX_INTERRUPTIONS):
            interruptions[element.key] += 1  # not the element's fault: retry now, not counted as a retry
            job.write_attempt_record(element.key, flight.attempt, {
                "element": element.key, "attempt": flight.attempt, "outcome": "interrupted",
                "error_type": end.error_type or "Interrupted", "message": end.reason, "traceback": "",
                "recorded_by": "master"}, if_absent=True)
            log.info("element %s attempt %d was interrupted (%s); running it again", element.key, flight.number, end.reason)
            progress.pending += 1
            todo.appendleft(element)
            return
        if refused is not None:
            failure = Failure(type(refused).__name__, str(refused))
        elif timed_out:
            failure = Failure("Timeout", "the attempt ran longer than element_timeout=%gs and was killed; "
                              "raise [kubeface] element_timeout if elements need longer" % settings.element_timeout)
        elif record and record.get("outcome") != "success":
            failure = failure_from_record(record)
        elif end is not None and end.error_type:
            message = end.reason
            if end.interrupted:
                message = ("interrupted %d times by the infrastructure, over the budget of %d interruptions per element "
                           "(MAX_INTERRUPTIONS); the last time: %s" % (interruptions[element.key] + 1,
                                                                      MAX_INTERRUPTIONS, message))
            if end.log_tail.strip():
                message += "; last output:\n" + end.log_tail.strip()[-2000:]
            failure = Failure(end.error_type, message, retryable=end.retryable, fatal=end.fatal)
        elif end is not None and end.exit_code == 0:
            failure = Failure("MissingResult", "the attempt exited successfully but its result is not in storage")
        else:
            reason = end.reason if end is not None else "the attempt ended"
            message = "%s before reporting an outcome" % reason
            if end is not None and end.log_tail.strip():
                message += "; last output:\n" + end.log_tail.strip()[-2000:]
            failure = Failure("AttemptLost", message, fatal=bool(end and end.fatal), retryable=not (end and end.fatal))
        if refused is not None:  # the runner's record said success: add the master's verdict to it
            job.write_attempt_record(element.key, flight.attempt, dict(
                record or {}, element=element.key, attempt=flight.attempt, outcome="result_refused",
                error_type=failure.error_type, message=failure.message, traceback="", recorded_by="master"))
        elif record is None:  # the runner could not write one: keep the master's account in storage
            job.write_attempt_record(element.key, flight.attempt, {
                "element": element.key, "attempt": flight.attempt, "outcome": "lost" if not timed_out else "timeout",
                "error_type": failure.error_type, "message": failure.message, "traceback": "",
                "started_by_master": flight.started, "recorded_by": "master"}, if_absent=True)
        if failure.fatal:
            fail_for_good(element, failure)
            report.stopped = "%s: %s" % (failure.error_type, failure.message)
        elif failure.retryable and failed_attempts[element.key] < settings.retries:
            failed_attempts[element.key] += 1
            delay = min(settings.retry_backoff * 2 ** (failed_attempts[element.key] - 1), settings.max_retry_backoff)
            delay *= random.uniform(0.8, 1.2)
            progress.retried += 1
            progress.pending += 1
            sequence += 1
            heapq.heappush(retry_at, (clock() + delay, sequence, element))
            log.info("element %s attempt %d failed (%s); retrying in %.1fs", element.key, flight.number, failure.error_type, delay)
        else:
            fail_for_good(element, failure)

    def start(element, number):
        attempts[element.key] += 1
        attempt = naming.new_attempt_id(attempts[element.key])
        while attempt in in_flight:  # ids are per element; a clash with another element's would lose it
            attempt = naming.new_attempt_id(attempts[element.key])
        if attempts[element.key] == 1:
            job.write_input(element)
        backend.launch(AttemptSpec(job.id, job.url, element.key, attempt, element.label,
                                   secret_env=job.secret_env()))
        in_flight[attempt] = _Flight(element, attempt, number, clock())
        running_of.setdefault(element.key, set()).add(attempt)

    def attempt_over(flight, end=None, timed_out=False):
        """One attempt ended; with speculation its sibling may still run, and the first result wins."""
        key = flight.element.key
        siblings = running_of.pop(key, set()) - {flight.attempt}
        if key in won:
            return
        if siblings and not job.has_result(key):
            running_of[key] = siblings  # the other attempt of this element decides
            log.info("attempt %s of element %s ended without a result; its sibling still runs", flight.attempt, key)
            return
        if attempt_ended(flight, end, timed_out):
            won.add(key)
            if key in versions:
                job.drop_other_versions(key)
            bisect.insort(durations, clock() - flight.started)
            for loser in siblings:
                backend.cancel(loser)
                in_flight.pop(loser, None)
                try:  # best effort, as on the way out
                    job.write_attempt_record(key, loser, {
                        "element": key, "attempt": loser, "outcome": "cancelled", "error_type": "Cancelled",
                        "message": "another attempt of this element finished first", "traceback": "",
                        "recorded_by": "master"}, if_absent=True)
                except Exception as error:  # noqa: BLE001
                    log.warning("could not record the cancellation of attempt %s: %s", loser, error)

    def speculate(now):
        """Back up attempts running far longer than the median, using free slots before fresh work."""
        if len(durations) < max(1, settings.speculation_min_done * to_run):
            return
        limit = settings.speculation_multiple * durations[len(durations) // 2]
        for flight in list(in_flight.values()):
            if len(in_flight) >= settings.cap:
                return
            key = flight.element.key
            if key not in backed_up and key not in won and now - flight.started > limit:
                backed_up.add(key)
                progress.speculated += 1
                log.info("element %s (%s) has run %.0fs, over %g x the median: launching a backup attempt",
                         key, flight.element.label, now - flight.started, settings.speculation_multiple)
                start(flight.element, flight.number)

    def budget_spent():
        if progress.failed > settings.failure_budget * progress.total:
            return ("%d of %d elements failed for good, more than the failure budget of %g%%"
                    % (progress.failed, progress.total, 100 * settings.failure_budget))
        if progress.failed >= ALL_FAILED_STOP and progress.succeeded == 0:
            return "the first %d elements to finish all failed" % progress.failed
        return ""

    try:
        while (todo or retry_at or in_flight) and not report.stopped:
            now = clock()
            while retry_at and retry_at[0][0] <= now:
                todo.appendleft(heapq.heappop(retry_at)[2])
            while todo and len(in_flight) < settings.cap:
                element = todo.popleft()
                start(element, attempts[element.key] + 1)
                progress.pending -= 1
            ended = backend.poll()
            for end in ended:
                flight = in_flight.pop(end.attempt, None)
                if flight is not None:
                    attempt_over(flight, end)
            now = clock()
            for attempt, flight in list(in_flight.items()):
                began = backend.started(attempt, flight.started)  # None: never ran, never times out
                if began is not None and now - began > timeout:
                    backend.cancel(attempt)
                    del in_flight[attempt]
                    attempt_over(flight, timed_out=True)
            if settings.speculation and not report.stopped:
                speculate(now)
            report.stopped = report.stopped or budget_spent() or (lease.lost if lease else "")
            running = {a: f for a, f in in_flight.items() if backend.started(a, f.started) is not None}
            progress.running, progress.starting = len(running), len(in_flight) - len(running)
            wall_offset = time.time() - clock()
            progress.running_attempts = {a: (f.element.key, f.started + wall_offset) for a, f in running.items()}
            snapshot = (progress.succeeded, progress.failed, progress.running, progress.retried)
            if on_progress and snapshot != last_progress:
                on_progress(progress)
                last_progress = snapshot
            if not ended and not report.stopped:
                # A backend that can wake on an attempt's end (local processes) waits for it instead.
                backend.wait(settings.poll_interval)
    finally:
        if in_flight and backend.leaves_attempts_running and not report.stopped:
            log.warning("job %s: leaving %d attempts running for a later rerun to adopt", job.id, len(in_flight))
            in_flight.clear()
        for attempt, flight in list(in_flight.items()):
            backend.cancel(attempt)
            try:  # best effort: an exception on the way out must not be hidden by a storage error
                job.write_attempt_record(flight.element.key, attempt, {
                    "element": flight.element.key, "attempt": attempt, "outcome": "cancelled",
                    "error_type": "Cancelled", "message": report.stopped or "the master stopped",
                    "traceback": "", "recorded_by": "master"}, if_absent=True)
            except Exception as error:  # noqa: BLE001
                log.warning("could not record the cancellation of attempt %s: %s", attempt, error)
        progress.running = progress.starting = 0
        progress.running_attempts = {}
    if report.stopped:
        done_now = job.finished()
        report.not_run = [e.key for e in job.elements if e.key not in done_now and e.key not in report.failures]
        log.error("job %s stopped early: %s", job.id, report.stopped)
    if on_progress:
        on_progress(progress)
    return report

