"""The engine: runs a job's unfinished elements on a backend until each succeeds or fails for good.

It caps attempts in flight, retries with backoff, kills attempts past their timeout, stops early
when the failure budget is spent, and reuses every result already in storage. It knows nothing of
Luigi, Kubernetes or GCS: a backend runs attempts, the job's storage holds the truth.

run_job takes the job's lease and hands over to a JobRun, whose methods are the loop's steps:
judge.py takes every decision on an attempt that ended (the verdict, the master's record, retry or
fail), attempt_ends.py carries it out; every read and write of the bucket goes through run_storage.RunStorage,
and report.py holds the Progress and the JobReport a run returns.
"""

import heapq
import itertools
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass

from ..cost import Usage, over_budget
from ..backends import attempt_request
from ..bucket import layout as naming
from . import signals
from ..backends.attempts import AttemptSpec
from .attempt_ends import AttemptEnds
from .inputs_ahead import THREADS, InputsAhead
from .judge import budget_spent
from .lease import JobLease
from .report import JobReport, Progress
from .run_storage import RunStorage

log = logging.getLogger(__name__)


@dataclass
class _Flight:
    element: object
    attempt: str
    number: int
    started: float
    began: float = None  # when the backend first said it runs (engine's clock): its cost runs from here
    request: object = None  # what it requested (cost.Request): the job's, or more memory after OOMs


def run_job(
    job, backend, settings, on_progress=None, clock=time.monotonic, sleep=time.sleep, run_id=None, stop_when=None
):
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
        log.info(
            "job %s: %d of %d elements done; run %s (%s, pid %s) is running the rest",
            job.id,
            done,
            len(job.elements),
            holder.get("run", "?"),
            holder.get("host", "?"),
            holder.get("pid", "?"),
        )

    waited = lease.acquire(on_wait=waiting, sleep=sleep)
    try:  # after a wait, the other master's results are in: list again
        return JobRun(job, backend, settings, on_progress, clock, lease, None if waited else versions, stop_when).run()
    finally:
        lease.release()


class JobRun(AttemptEnds):
    """One master's run of a job's unfinished elements: the queue, the retries waiting, the attempts in
    flight (with speculation, two of one element), the counters and the report.

    run() repeats tick() (release retries, fill slots, collect ends, time out, speculate, check the
    budget) until nothing is left or the job stops, then shutdown() cancels what still runs. What
    happens to an attempt that ended (on_end, charge) is AttemptEnds' (attempt_ends.py).
    """

    def __init__(self, job, backend, settings, on_progress, clock, lease, versions=None, stop_when=None):
        self.job, self.backend, self.settings = job, backend, settings
        self.on_progress, self.clock, self.lease = on_progress, clock, lease
        self.store = RunStorage(job)
        self.versions = self.store.result_versions() if versions is None else versions
        finished = self.store.finished(self.versions)
        self.todo = deque(e for e in job.elements if e.key not in finished)
        self.retry_at = []  # heap of (time, sequence, element)
        # pending is derived from the two queues: changed in place only, never rebound
        self.progress = Progress(total=len(job.elements), waiting=(self.todo, self.retry_at))
        self.progress.reused = self.progress.total - len(self.todo)
        self.report = JobReport(self.progress)
        self.to_run = len(self.todo)
        self.in_flight = {}  # attempt id -> _Flight (two of one element while a backup runs)
        # attempts: the number of each element's last attempt (earlier runs' too, from run()); failed_attempts: this run's
        self.attempts, self.interruptions, self.failed_attempts = Counter(), Counter(), Counter()
        self.out_of_memory = Counter()  # this run's OOMs of each element that its backend answered with more memory
        # Inputs written ahead of their launches, side by side, where the storage is a bucket (inputs_ahead.py)
        self.inputs = InputsAhead(self.store.write_input, settings.cap, THREADS if job.storage.remote else 0)
        # Elements given a backup. Whether an element won needs no set: on_success ends its other attempts, so
        # an element that succeeded has none in flight, and only attempts in flight end, time out or get backups.
        self.backed_up = set()
        self.durations = []  # sorted durations of the successful attempts, for the median
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
        self.inputs.start(self.todo)
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
        log.info(
            "job %s: %d elements, %d already done, %d to run",
            job.id,
            self.progress.total,
            self.progress.reused,
            len(todo),
        )
        stale = [e.key for e in todo if self.versions.get(e.key)]
        if stale:
            unversioned = sum(1 for k in stale if self.versions[k] == {""})
            log.info(
                "job %s: %d of them have results of other code (code version %s now%s): recomputing them; pin "
                "code_version() (Client.map: code_version=) or set [kubeface] reuse_results = any to keep them",
                job.id,
                len(stale),
                job.code_version,
                ", %d written before code versions" % unversioned if unversioned else "",
            )

    def adopt(self):
        """Follow the attempts an earlier master left running instead of launching them again."""
        adopted = self.backend.adopt(self.job)
        if not adopted:
            return
        for element in [e for e in self.todo if e.key in adopted]:
            attempt = adopted.pop(element.key)
            self.attempts[element.key] = max(self.attempts[element.key], naming.attempt_number(attempt))
            self.inputs.written(element.key)
            self.in_flight[attempt] = _Flight(element, attempt, self.attempts[element.key], self.clock())
        followed = {f.element.key for f in self.in_flight.values()}
        kept = [e for e in self.todo if e.key not in followed]
        self.todo.clear()  # in place: progress.pending counts this deque
        self.todo.extend(kept)
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
        ended = self.backend.poll()
        for end in ended:
            flight = self.in_flight.pop(end.attempt, None)
            if flight is not None:
                self.on_end(flight, end)
        now = self.clock()
        self.time_out(now)
        if self.settings.speculation and not self.report.stopped:
            self.speculate(now)
        self.report.stopped = (
            self.report.stopped
            or budget_spent(self.progress, self.settings)
            or over_budget(self.cost_started(now), self.settings.max_cost)
            or (self.lease.lost if self.lease else "")
            or (self.stop_when() if self.stop_when else "")
        )
        self.show_progress()
        return ended

    def launch(self, element, number):
        self.attempts[element.key] += 1
        attempt = naming.new_attempt_id(self.attempts[element.key])
        while attempt in self.in_flight:  # ids are per element; a clash with another element's would lose it
            attempt = naming.new_attempt_id(self.attempts[element.key])
        self.inputs.ready(element)  # once per run: bound to this run's code version
        grown = self.out_of_memory[element.key]
        request = attempt_request(self.settings, grown) if grown else self.request
        self.backend.launch(
            AttemptSpec(
                self.job.id,
                self.job.url,
                element.key,
                attempt,
                element.label,
                resources=request.to_record(),
                secret_env=self.store.secret_env(),
                out_of_memory=grown,
                interruptions=self.interruptions[element.key],
            )
        )
        self.in_flight[attempt] = _Flight(element, attempt, number, self.clock(), request=request)

    def time_out(self, now):
        for attempt, flight in list(self.in_flight.items()):
            began = self.backend.started(attempt, flight.started)  # None: never ran, never times out
            flight.began = began if flight.began is None else flight.began
            # A sibling that won in this round has cancelled it already: it is no longer in flight.
            if began is not None and now - began > self.timeout and attempt in self.in_flight:
                self.on_timeout(attempt, flight)

    def on_timeout(self, attempt, flight):
        """Judged and recorded before it is cancelled, as every cancellation is: its runner, stopped by
        SIGTERM, writes its own record only where the master's account is not (if_absent)."""
        del self.in_flight[attempt]
        try:
            self.on_end(flight, timed_out=True)
        finally:
            self.backend.cancel(attempt)

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
            if key not in self.backed_up and now - flight.started > limit:
                self.backed_up.add(key)
                self.progress.speculated += 1
                log.info(
                    "element %s (%s) has run %.0fs, over %g x the median: launching a backup attempt",
                    key,
                    flight.element.label,
                    now - flight.started,
                    settings.speculation_multiple,
                )
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
        self.inputs.close()
        if self.in_flight and self.backend.leaves_attempts_running and not self.report.stopped:
            log.warning(
                "job %s: leaving %d attempts running for a later rerun to adopt", self.job.id, len(self.in_flight)
            )
            self.in_flight.clear()
        for attempt, flight in list(self.in_flight.items()):  # the account first, as for a sibling
            self.store.write_cancelled(
                flight.element.key,
                attempt,
                self.report.stopped or why or "the master stopped",
                **self.charge(flight, "cancelled"),
            )
            self.backend.cancel(attempt)
        self.progress.running = self.progress.starting = 0
        self.progress.running_attempts = {}

    def cost_started(self, now):
        """The cost of the work started so far: attempts that ended, and those running, up to now."""
        if not self.settings.max_cost:
            return 0.0
        running = sum(
            Usage.of(self._request_of(f), now - f.began).cost for f in self.in_flight.values() if f.began is not None
        )
        return self.report.cost.total().cost + running

    def finish(self):
        if self.report.stopped:
            done_now = self.store.finished()
            self.report.not_run = [
                e.key for e in self.job.elements if e.key not in done_now and e.key not in self.report.failures
            ]
            done = len(self.job.elements) - len(self.report.not_run) - len(self.report.failures)
            log.error(
                "job %s stopped early: %s; %d of %d elements are done and kept: a rerun computes only the other %d",
                self.job.id,
                self.report.stopped,
                done,
                len(self.job.elements),
                len(self.job.elements) - done,
            )
        if self.on_progress:
            self.on_progress(self.progress)
        return self.report
