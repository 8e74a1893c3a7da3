"""An in-process backend on a virtual clock: the engine's fake compute, for tests and benchmarks.

Each attempt runs the task runner's own code (function, input, write-once result, outcome record)
in this process when its simulated duration has passed on the backend's clock. Pass the backend's
`clock` and `sleep` to `run_job`: an hour of attempts then takes as long as the Python calls.

A script (httpx's MockTransport idea) decides how each attempt ends instead: run the runner (the
default), end with a given AttemptEnd, with or without a record in the runner's place, spoil the
result, or never end. So every way an attempt can end reaches the engine without a real process.
"""

import math
from dataclasses import dataclass, replace
from typing import Optional

from ..bucket import attempts, layout as naming
from ..runner import attempt as runner
from ..bucket.records import AttemptRecord, Outcome, master_record
from ..storage import open_storage
from . import AttemptEnd, AttemptSpec, Backend


@dataclass(frozen=True)
class Run:
    """Run the task runner, as a process would; corrupt_result: then spoil the result it wrote;
    exit_late: then never report the end (the result is in, the process hangs on its way out)."""

    corrupt_result: bool = False
    exit_late: bool = False


class End:
    """End without running the runner: write record (if any) in its place, then report this end: an AttemptEnd
    of exit_code, reason and its other fields by name, for the attempt the script is asked about."""

    def __init__(
        self,
        exit_code: Optional[int] = None,
        reason: str = "the scripted attempt ended",
        record: Optional[dict] = None,
        **end_fields,
    ):
        self.record = record  # the attempt's record, as the runner (or another master) wrote it
        self.end = AttemptEnd(attempt="", exit_code=exit_code, reason=reason, **end_fields)

    def __repr__(self):
        return "End(%r, record=%r)" % (self.end, self.record)


@dataclass(frozen=True)
class Hang:
    """Never end: the engine has to time the attempt out or cancel it. records_its_stop: cancelled, its
    runner records at once that SIGTERM stopped it (as a real runner does, racing the master's account)."""

    records_its_stop: bool = False


def success_record(**fields):
    """A runner's success record (what it writes after writing a result)."""
    return dict({"outcome": "success", "result_written": True}, **fields)


def error_record(error_type="ValueError", message="the element raised", **fields):
    """A runner's record of an element that raised (exit 1)."""
    return dict({"outcome": "error", "error_type": error_type, "message": message, "traceback": "Traceback"}, **fields)


def unusable_record(stage="input", error_type="CorruptBlobError", message="could not be loaded", **fields):
    """A runner's record of a function (stage function) or input (stage input) it could not load (exit 2)."""
    return dict(
        {"outcome": "unusable_input", "stage": stage, "error_type": error_type, "message": message, "traceback": ""},
        **fields,
    )


def cancelled_by_master(message="the master stopped"):
    """What another master writes for an attempt it cancelled (the ids are filled in as it is written)."""
    return master_record("", "", "cancelled", "Cancelled", message)


@dataclass
class _Attempt:
    spec: AttemptSpec
    ends: float  # virtual time; math.inf: never
    script: object


class SimulatedBackend(Backend):
    """duration(spec) -> seconds of virtual time for that attempt (0: instant).

    script(spec, number) -> Run(), End(...), Hang() or None (Run()): how attempt `number` of the
    spec's element ends. adopted: AttemptSpecs an earlier master left running, which `adopt` hands
    over. `launched`, `cancelled` and `timeline` (virtual time, attempts running) record what
    happened, so tests can assert on outcomes and benchmarks can measure slot use.
    """

    def __init__(self, settings=None, duration=None, script=None, adopted=(), leaves_attempts_running=False):
        self.settings = settings
        self.duration = duration or (lambda spec: 0.0)
        self.script = script or (lambda spec, number: None)
        self.leaves_attempts_running = leaves_attempts_running
        self.now = 0.0
        self.launched = []  # AttemptSpec, in launch order
        self.cancelled = []  # attempt ids
        self.timeline = [(0.0, 0)]  # (virtual time, attempts running) after each change
        self._running = {}  # attempt -> _Attempt
        self._storages = {}
        self._adopted = list(adopted)

    def clock(self):
        return self.now

    def sleep(self, seconds):
        """Virtual sleep that wakes early when an attempt ends, as a watch on real pods would."""
        ends = [a.ends for a in self._running.values()]
        self.now = min([self.now + seconds] + [max(end, self.now) for end in ends])

    def wait(self, seconds):
        self.sleep(seconds)

    def launch(self, spec):
        self.launched.append(spec)
        self._start(spec)

    def adopt(self, job):
        found = {}
        for spec in self._adopted:
            if spec.job_id == job.id:
                self._start(spec)
                found[spec.element] = spec.attempt
        return found

    def _start(self, spec):
        script = self.script(spec, naming.attempt_number(spec.attempt)) or Run()
        duration = float(self.duration(spec))
        ends = math.inf if isinstance(script, Hang) else self.now + duration
        self._running[spec.attempt] = _Attempt(spec, ends, script)
        self._mark()

    def poll(self):
        ended = []
        for attempt, running in list(self._running.items()):
            if running.ends > self.now:
                continue
            del self._running[attempt]
            end = self._end(running.spec, running.script)
            if isinstance(running.script, Run) and running.script.exit_late:
                self._running[attempt] = _Attempt(running.spec, math.inf, Hang())
            else:
                ended.append(end)
        if ended:
            self._mark()
        return ended

    def _end(self, spec, script):
        storage = self._storage(spec.job_url)
        if isinstance(script, End):
            if script.record is not None:
                record = dict(script.record, element=spec.element, attempt=spec.attempt)
                attempts.write_record(storage, spec.element, spec.attempt, record)
            return replace(script.end, attempt=spec.attempt)
        key = runner.signing_key_from_env(dict(spec.secret_env))  # as a process would get it
        code, record = runner.execute_attempt(storage, spec.element, spec.attempt, key, resources=spec.resources)
        attempts.write_record(storage, spec.element, spec.attempt, record)
        if script.corrupt_result:
            result = naming.result_key(spec.element, record.get("code_version", ""))
            storage.write(result, b"not a result: spoilt by the script")
        return AttemptEnd(attempt=spec.attempt, exit_code=code, reason="the attempt exited with code %d" % code)

    def cancel(self, attempt):
        running = self._running.pop(attempt, None)
        if running is not None:
            self.cancelled.append(attempt)
            self._mark()
            if isinstance(running.script, Hang) and running.script.records_its_stop:
                spec = running.spec
                record = AttemptRecord.begin(spec.element, attempt, host="simulated").end(
                    Outcome.INTERRUPTED, error_type="Terminated", message="stopped by SIGTERM"
                )
                attempts.write_record(self._storage(spec.job_url), spec.element, attempt, record, if_absent=True)

    def close(self):
        for attempt in list(self._running):
            self.cancel(attempt)

    def _storage(self, url):
        if url not in self._storages:
            self._storages[url] = open_storage(url)
        return self._storages[url]

    def _mark(self):
        if self.timeline[-1][0] == self.now:
            self.timeline[-1] = (self.now, len(self._running))
        else:
            self.timeline.append((self.now, len(self._running)))
