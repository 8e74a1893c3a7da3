"""The engine: runs a job's unfinished elements on a backend until each succeeds or fails for good.

It caps attempts in flight, retries with backoff, kills attempts past their timeout, stops early
when the failure budget is spent, and reuses every result already in storage. It knows nothing of
Luigi, Kubernetes or GCS: a backend runs attempts, the job's storage holds the truth.

run_job takes the job's lease and hands over to a JobRun, whose methods are the loop's steps;
how one attempt ended is decided in judge.py, and every read and write of the bucket goes
through RunStorage.
"""

import bisect
import heapq
import itertools
import logging
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from ..cost import Ledger, Usage, over_budget
from ..backends import attempt_request
from ..bucket import layout as naming
from . import signals
from ..backends.attempts import AttemptSpec
from ..errors import BlobNotFoundError, CorruptBlobError, UnreadableRecordError
from .judge import Requeue, Succeeded, budget_spent, judge, retry_delay
from .lease import JobLease
from ..bucket.records import Outcome, master_record

log = logging.getLogger(__name__)


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
    cost: Ledger = field(default_factory=Ledger, repr=False, compare=False)  # used per category

    @property
    def done(self):
        return self.reused + self.succeeded

    def describe(self):
        return ("%d elements: %d reused, %d succeeded, %d running, %d pending, %d failed, %d retried, %d speculated"
                % (self.total, self.reused, self.succeeded, self.running, self.pending + self.starting, self.failed,
                   self.retried, self.speculated))

    def counts(self):
        """The counts alone, and the cost per category (what a dispatch summary records)."""
        counts = {k: v for k, v in vars(self).items() if k not in ("running_attempts", "cost")}
        return dict(counts, cost=self.cost.to_json())


@dataclass
class JobReport:
    progress: Progress
    failures: dict = field(default_factory=dict)  # element key -> Failure (failed for good)
    stopped: str = ""  # why the job stopped early, if it did
    not_run: list = field(default_factory=list)  # element keys never finished because of the stop

    @property
    def cost(self):
        """What the run's attempts used, per category (cost.Ledger)."""
        return self.progress.cost

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
    began: float = None  # when the backend first said it runs (engine's clock): its cost runs from here


def run_job(job, backend, settings, on_progress=None, clock=time.monotonic, sleep=time.sleep, run_id=None,
            stop_when=None):
    """Run every element of job that has no result yet; return a JobReport (never raises for element failures).

    Only the holder of the job's lease launches anything: a second master waits for the first, then
    runs what is still missing (usually nothing), and adopts attempts only from a master whose lease lapsed.
    stop_when() is asked on every round: a reason ends the run early (a forked worker whose luigi is gone).
    Ctrl-C (or SIGTERM, see signals.py) ends it too, cleaned up: the KeyboardInterrupt carries the report.
    """
    store = RunStorage(job)
    versions = store.result_versions()  # one listing serves this check and the run, unless we waited
    if not set(e.key for e in job.elements) - store.finished(versions):
        return JobRun(job, backend, settings, on_progress, clock, None, versions).run()
    lease = JobLease(job.store.storage, settings.lease_seconds, run_id, key=job.store.signing_key())

    def waiting(holder):
        done = len(set(e.key for e in job.elements) & store.finished())
        log.info("job %s: %d of %d elements done; run %s (%s, pid %s) is running the rest", job.id, done,
                 len(job.elements), holder.get("run", "?"), holder.get("host", "?"), holder.get("pid", "?"))

    waited = lease.acquire(on_wait=waiting, sleep=sleep)
    try:  # after a wait, the other master's results are in: list again
        return JobRun(job, backend, settings, on_progress, clock, lease, None if waited else versions,
                      stop_when).run()
    finally:
        lease.release()


class RunStorage:
    """The bucket as a run uses it: every read and write the engine makes, in one place.

    The master never trusts an unchecked blob: a result counts once check_result has read its signed head.
    """

    def __init__(self, job):
        self.job, self.store = job, job.store

    def result_versions(self):
        return self.store.result_versions()

    def finished(self, versions=None):
        return self.store.finished(versions)

    def check_result(self, key, versions, whole=False):
        """True when the element's result checks out, False when there is none; CorruptBlobError when refused.
        versions: the run's result_versions(); whole: its payload too, as before superseded results are deleted."""
        try:
            self.store.check_result(key, whole, versions)
            return True
        except BlobNotFoundError:
            return False

    def has_result(self, key, versions):
        return self.store.has_result(key, versions)

    def drop_other_versions(self, key, versions):
        self.store.drop_other_versions(key, versions)

    def write_input(self, element):
        self.store.write_input(element, self.job.shared_keys, self.job.code_version)

    def last_attempt_numbers(self):
        """element -> the number of its last attempt in earlier runs, from one listing of attempts/: numbers
        go on across runs, so each attempt's record, log and "#N" stay its own."""
        return {key: naming.next_attempt_number(ids) - 1 for key, ids in self.store.all_attempts().items()}

    def secret_env(self):
        return self.store.secret_env()

    def record(self, key, attempt):
        """The attempt's record, or None when there is none or it does not parse (the master writes its own)."""
        try:
            return self.store.attempt_record(key, attempt)
        except UnreadableRecordError as error:
            log.warning("%s", error)
            return None

    def write_record(self, key, attempt, record, if_absent=False):
        self.store.write_attempt_record(key, attempt, record, if_absent=if_absent)

    def write_cancelled(self, key, attempt, message, **fields):
        """Best effort, as on the way out: a storage error must not hide what stopped the run."""
        try:
            self.write_record(key, attempt, master_record(key, attempt, Outcome.CANCELLED, "Cancelled", message,
                                                          **fields), if_absent=True)
        except Exception as error:  # noqa: BLE001
            log.warning("could not record the cancellation of attempt %s: %s", attempt, error)


class JobRun:
    """One master's run of a job's unfinished elements: the queue, the retries waiting, the attempts in
    flight (with speculation, two of one element), the counters and the report.

    run() repeats tick() (release retries, fill slots, collect ends, time out, speculate, check the
    budget) until nothing is left or the job stops, then shutdown() cancels what still runs.
    """

    def __init__(self, job, backend, settings, on_progress, clock, lease, versions=None, stop_when=None):
        self.job, self.backend, self.settings = job, backend, settings
        self.on_progress, self.clock, self.lease = on_progress, clock, lease
        self.store = RunStorage(job)
        self.progress = Progress(total=len(job.elements))
        self.versions = self.store.result_versions() if versions is None else versions
        finished = self.store.finished(self.versions)
        self.todo = deque(e for e in job.elements if e.key not in finished)
        self.progress.reused = self.progress.total - len(self.todo)
        self.progress.pending = len(self.todo)
        self.report = JobReport(self.progress)
        self.to_run = len(self.todo)
        self.in_flight = {}  # attempt id -> _Flight
        self.running_of = {}  # element key -> its attempts in flight (two while a backup runs)
        # attempts: the number of each element's last attempt (earlier runs' too, from run()); failed_attempts: this run's
        self.attempts, self.interruptions, self.failed_attempts = Counter(), Counter(), Counter()
        self.out_of_memory = Counter()  # this run's OOMs of each element that its backend answered with more memory
        self.inputs_written = set()  # elements whose input this run wrote (or an adopted attempt reads)
        self.backed_up, self.won = set(), set()  # elements given a backup; elements whose result came this run
        self.durations = []  # sorted durations of the successful attempts, for the median
        self.retry_at = []  # heap of (time, sequence, element)
        self.sequence = itertools.count(1)
        self.last_progress = None
        self.timeout = settings.element_timeout + backend.timeout_slack
        self.stop_when = stop_when  # asked every round: a reason to stop ("" to go on)
        self.request = attempt_request(settings)  # what each attempt requests, priced (cost.py)

    def run(self):
        if not self.todo:
            return self.report
        self.log_start()
        self.attempts.update(self.store.last_attempt_numbers())  # numbers go on from earlier runs'
        self.adopt()
        try:
            while (self.todo or self.retry_at or self.in_flight) and not self.report.stopped:
                ended = self.tick()
                if not ended and not self.report.stopped:
                    # A backend that can wake on an attempt's end (local processes) waits for it instead.
                    self.backend.wait(self.settings.poll_interval)
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: clean up, then let it stop the command
            self.interrupted(stop)
            raise
        except BaseException:
            self.shutdown()
            raise
        self.shutdown()
        return self.finish()

    def interrupted(self, stop):
        """Cancel and record what runs, and hand the report to whoever writes the run's summary."""
        self.shutdown(signals.why(stop))
        self.report.stopped = signals.why(stop)
        try:
            stop.report = self.finish()
        except Exception as error:  # noqa: BLE001 - storage trouble on the way out must not hide the stop
            log.warning("job %s: could not list what finished before the stop: %s", self.job.id, error)
            stop.report = self.report

    def log_start(self):
        job, todo = self.job, self.todo
        log.info("job %s: %d elements, %d already done, %d to run", job.id, self.progress.total,
                 self.progress.reused, len(todo))
        stale = [e.key for e in todo if self.versions.get(e.key)]
        if stale:
            unversioned = sum(1 for k in stale if self.versions[k] == {""})
            log.info("job %s: %d of them have results of other code (code version %s now%s): recomputing them; pin "
                     "code_version() (Client.map: code_version=) or set [kubeface] reuse_results = any to keep them",
                     job.id, len(stale), job.code_version,
                     ", %d written before code versions" % unversioned if unversioned else "")

    def adopt(self):
        """Follow the attempts an earlier master left running instead of launching them again."""
        adopted = self.backend.adopt(self.job)
        if not adopted:
            return
        for element in [e for e in self.todo if e.key in adopted]:
            attempt = adopted.pop(element.key)
            self.attempts[element.key] = max(self.attempts[element.key], naming.attempt_number(attempt))
            self.inputs_written.add(element.key)
            self.in_flight[attempt] = _Flight(element, attempt, self.attempts[element.key], self.clock())
            self.running_of[element.key] = {attempt}
        followed = {f.element.key for f in self.in_flight.values()}
        self.todo = deque(e for e in self.todo if e.key not in followed)
        self.progress.pending = len(self.todo)
        for attempt in adopted.values():  # their elements are done already, or no longer in the grid
            self.backend.cancel(attempt)

    def tick(self):
        """One round of the loop; returns the ends the backend reported."""
        now = self.clock()
        while self.retry_at and self.retry_at[0][0] <= now:
            self.todo.appendleft(heapq.heappop(self.retry_at)[2])
        while self.todo and len(self.in_flight) < self.settings.cap:
            element = self.todo.popleft()
            self.launch(element, self.attempts[element.key] + 1)
            self.progress.pending -= 1
        ended = self.backend.poll()
        for end in ended:
            flight = self.in_flight.pop(end.attempt, None)
            if flight is not None:
                self.on_end(flight, end)
        now = self.clock()
        self.time_out(now)
        if self.settings.speculation and not self.report.stopped:
            self.speculate(now)
        self.report.stopped = (self.report.stopped or budget_spent(self.progress, self.settings)
                               or over_budget(self.cost_started(now), self.settings.max_cost)
                               or (self.lease.lost if self.lease else "")
                               or (self.stop_when() if self.stop_when else ""))
        self.show_progress()
        return ended

    def launch(self, element, number):
        self.attempts[element.key] += 1
        attempt = naming.new_attempt_id(self.attempts[element.key])
        while attempt in self.in_flight:  # ids are per element; a clash with another element's would lose it
            attempt = naming.new_attempt_id(self.attempts[element.key])
        if element.key not in self.inputs_written:  # once per run: bound to this run's code version
            self.store.write_input(element)
            self.inputs_written.add(element.key)
        self.backend.launch(AttemptSpec(self.job.id, self.job.url, element.key, attempt, element.label,
                                        resources=self.request.to_record(), secret_env=self.store.secret_env(),
                                        out_of_memory=self.out_of_memory[element.key],
                                        interruptions=self.interruptions[element.key]))
        self.in_flight[attempt] = _Flight(element, attempt, number, self.clock())
        self.running_of.setdefault(element.key, set()).add(attempt)

    def time_out(self, now):
        for attempt, flight in list(self.in_flight.items()):
            began = self.backend.started(attempt, flight.started)  # None: never ran, never times out
            flight.began = began if flight.began is None else flight.began
            # A sibling that won in this round has cancelled it already: it is no longer in flight.
            if began is not None and now - began > self.timeout and attempt in self.in_flight:
                self.on_timeout(attempt, flight)

    def on_timeout(self, attempt, flight):
        self.backend.cancel(attempt)
        del self.in_flight[attempt]
        self.on_end(flight, timed_out=True)

    def on_end(self, flight, end=None, timed_out=False):
        """One attempt ended; with speculation its sibling may still run, and the first result wins."""
        key = flight.element.key
        siblings = self.running_of.pop(key, set()) - {flight.attempt}
        if key in self.won:
            self.charge(flight, "speculated")
            return
        if siblings and not self.store.has_result(key, self.versions):
            self.charge(flight, "speculated")
            self.running_of[key] = siblings  # the other attempt of this element decides
            log.info("attempt %s of element %s ended without a result; its sibling still runs", flight.attempt, key)
            return
        verdict = self.verdict(flight, end, timed_out)
        if isinstance(verdict, Succeeded):
            self.charge(flight, "succeeded")
            self.on_success(flight, siblings)
        elif isinstance(verdict, Requeue):
            self.charge(flight, "retried" if verdict.more_memory else "preempted")  # an OOM that grows: retried work
            self.requeue(flight, verdict, end)
        else:
            self.on_failure(flight, verdict, end)

    def verdict(self, flight, end, timed_out):
        """Read what storage holds of the attempt and judge it (one read per result: never an unchecked blob)."""
        key = flight.element.key
        refused = None
        try:  # also after a timeout: the result may be written, the exit late
            whole = bool(self.versions.get(key))  # on_success deletes the other versions' results
            if self.store.check_result(key, self.versions, whole=whole):
                return Succeeded()
        except CorruptBlobError as error:  # moved aside by check_result: this element runs again
            refused = error
        record = None if timed_out else self.store.record(key, flight.attempt)
        return judge(end, record, self.settings, refused=refused, timed_out=timed_out,
                     interruptions=self.interruptions[key])

    def on_success(self, flight, siblings):
        key = flight.element.key
        self.progress.succeeded += 1
        self.won.add(key)
        if key in self.versions:
            self.store.drop_other_versions(key, self.versions)
        bisect.insort(self.durations, self.clock() - flight.started)
        for loser in siblings:  # the account first: a runner stopped by SIGTERM never writes over it
            other = self.in_flight.pop(loser, None)
            account = self.charge(other, "speculated") if other is not None else {}
            self.store.write_cancelled(key, loser, "another attempt of this element finished first", **account)
            self.backend.cancel(loser)

    def requeue(self, flight, verdict, end=None):
        """Interrupted (not the element's fault), or out of memory with more to come: run it again now, not
        counted as a retry."""
        element = flight.element
        placement = dict(end.placement) if end is not None else {}  # memory limit, spot: for the master's record
        if verdict.more_memory:
            self.out_of_memory[element.key] += 1
            outcome, what = Outcome.LOST, "ran out of memory"
        else:
            self.interruptions[element.key] += 1
            outcome, what = Outcome.INTERRUPTED, "was interrupted"
        self.store.write_record(element.key, flight.attempt, master_record(
            element.key, flight.attempt, outcome, verdict.error_type, verdict.reason, **self.account(flight),
            **placement), if_absent=True)
        log.info("element %s attempt %d %s (%s); running it again", element.key, flight.number, what, verdict.reason)
        self.progress.pending += 1
        self.todo.appendleft(element)

    def on_failure(self, flight, verdict, end=None):
        element, failure = flight.element, verdict.failure
        placement = dict(end.placement) if end is not None else {}  # memory limit, spot: for the master's record
        if verdict.master_outcome is Outcome.RESULT_REFUSED:
            self.store.write_record(element.key, flight.attempt, {**(verdict.runner_record or {}), **master_record(
                element.key, flight.attempt, Outcome.RESULT_REFUSED, failure.error_type, failure.message)})
        elif verdict.master_outcome is not None:
            self.store.write_record(element.key, flight.attempt, master_record(
                element.key, flight.attempt, verdict.master_outcome, failure.error_type, failure.message,
                **self.account(flight), **placement), if_absent=verdict.runner_record is None)
        retry = not failure.fatal and failure.retryable and self.failed_attempts[element.key] < self.settings.retries
        self.charge(flight, "retried" if retry else "failed")
        if failure.fatal:
            self.fail_for_good(element, failure)
            self.report.stopped = "%s: %s" % (failure.error_type, failure.message)
        elif failure.retryable and self.failed_attempts[element.key] < self.settings.retries:
            self.retry(flight, failure)
        else:
            self.fail_for_good(element, failure)

    def retry(self, flight, failure):
        key = flight.element.key
        self.failed_attempts[key] += 1
        delay = retry_delay(self.failed_attempts[key], self.settings)
        self.progress.retried += 1
        self.progress.pending += 1
        heapq.heappush(self.retry_at, (self.clock() + delay, next(self.sequence), flight.element))
        log.info("element %s attempt %d failed (%s); retrying in %.1fs", key, flight.number, failure.error_type, delay)

    def fail_for_good(self, element, failure):
        self.report.failures[element.key] = failure
        self.progress.failed += 1
        log.warning("element %s (%s) failed for good: %s: %s", element.key, element.label, failure.error_type,
                    failure.message)

    def speculate(self, now):
        """Back up attempts running far longer than the median, using free slots before fresh work."""
        settings = self.settings
        if len(self.durations) < max(1, settings.speculation_min_done * self.to_run):
            return
        limit = settings.speculation_multiple * self.durations[len(self.durations) // 2]
        for flight in list(self.in_flight.values()):
            if len(self.in_flight) >= settings.cap:
                return
            key = flight.element.key
            if key not in self.backed_up and key not in self.won and now - flight.started > limit:
                self.backed_up.add(key)
                self.progress.speculated += 1
                log.info("element %s (%s) has run %.0fs, over %g x the median: launching a backup attempt",
                         key, flight.element.label, now - flight.started, settings.speculation_multiple)
                self.launch(flight.element, flight.number)

    def show_progress(self):
        progress = self.progress
        running = {a: f for a, f in self.in_flight.items() if self.backend.started(a, f.started) is not None}
        progress.running, progress.starting = len(running), len(self.in_flight) - len(running)
        wall_offset = time.time() - self.clock()
        progress.running_attempts = {a: (f.element.key, f.started + wall_offset) for a, f in running.items()}
        snapshot = (progress.succeeded, progress.failed, progress.running, progress.retried)
        if self.on_progress and snapshot != self.last_progress:
            self.on_progress(progress)
            self.last_progress = snapshot

    def shutdown(self, why=""):
        """Cancel what still runs and record why, unless the backend leaves it for a rerun to adopt (Ctrl-C)."""
        if self.in_flight and self.backend.leaves_attempts_running and not self.report.stopped:
            log.warning("job %s: leaving %d attempts running for a later rerun to adopt", self.job.id,
                        len(self.in_flight))
            self.in_flight.clear()
        for attempt, flight in list(self.in_flight.items()):  # the account first, as for a sibling
            self.store.write_cancelled(flight.element.key, attempt, self.report.stopped or why or "the master stopped",
                                       **self.charge(flight, "cancelled"))
            self.backend.cancel(attempt)
        self.progress.running = self.progress.starting = 0
        self.progress.running_attempts = {}

    def account(self, flight):
        """What the master records of an attempt it ended or saw end: its resources and wall-clock times."""
        now, wall = self.clock(), time.time() - self.clock()  # records hold wall-clock times, never the engine's
        began = flight.began if flight.began is not None else self.backend.started(flight.attempt, flight.started)
        seconds = max(0.0, now - began) if began is not None else 0.0  # never ran (a pod waiting for a node): 0
        return {"resources": self.request.to_record(), "started_by_master": flight.started + wall,
                "started": (began if began is not None else now) + wall, "finished": now + wall, "duration": seconds}

    def charge(self, flight, category):
        """Charge an attempt that ended to the run's cost (cost.py); returns its account for a master record."""
        account = self.account(flight)
        self.report.cost.charge(category, self.request, account["duration"])
        return account

    def cost_started(self, now):
        """The cost of the work started so far: attempts that ended, and those running, up to now."""
        if not self.settings.max_cost:
            return 0.0
        running = sum(Usage.of(self.request, now - f.began).cost for f in self.in_flight.values()
                      if f.began is not None)
        return self.report.cost.total().cost + running

    def finish(self):
        if self.report.stopped:
            done_now = self.store.finished()
            self.report.not_run = [e.key for e in self.job.elements
                                   if e.key not in done_now and e.key not in self.report.failures]
            done = len(self.job.elements) - len(self.report.not_run) - len(self.report.failures)
            log.error("job %s stopped early: %s; %d of %d elements are done and kept: a rerun computes only the "
                      "other %d", self.job.id, self.report.stopped, done, len(self.job.elements),
                      len(self.job.elements) - done)
        if self.on_progress:
            self.on_progress(self.progress)
        return self.report
