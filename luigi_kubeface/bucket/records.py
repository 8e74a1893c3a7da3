"""The records a job keeps in its bucket prefix, each type defined once: attempt records (with what
each outcome means), run summaries, the master's live progress, Luigi's per-run flag, the job's
metadata and its grid.

The JSON layout is the bucket's: jobs written by earlier versions read unchanged, and every reader
tolerates fields it does not know or misses. Only the standard library: the runner (what a pod
runs) imports this module.
"""

import enum
import json
import time
from typing import Optional
from dataclasses import dataclass, field

from ..cost import Ledger


class Outcome(str, enum.Enum):
    """How an attempt ended, as its record in attempts/<element>/<attempt>.json says."""

    SUCCESS = "success"
    ERROR = "error"  # the element raised
    UNUSABLE_INPUT = "unusable_input"  # its function, code or input could not be loaded
    LOST = "lost"  # ended without reporting (the master's account)
    TIMEOUT = "timeout"  # ran over element_timeout (the master's account)
    INTERRUPTED = "interrupted"  # stopped by the infrastructure; run again, not counted as a retry
    CANCELLED = "cancelled"  # stopped by a master: a sibling won, or the master stopped
    RESULT_REFUSED = "result_refused"  # the runner said success; its result failed the master's check

    @property
    def failed(self):
        """The element's own failure (what status pages count as failed)."""
        return self in FAILED


FAILED = frozenset({Outcome.ERROR, Outcome.UNUSABLE_INPUT, Outcome.LOST, Outcome.TIMEOUT})


def outcome_of(record):
    """The record's Outcome, or None when it has none or one this version does not know."""
    try:
        return Outcome(record.get("outcome")) if record else None
    except ValueError:
        return None


def _object(data, what):
    """A JSON object from bytes, text or an already parsed value; ValueError naming what it should be."""
    value = json.loads(data) if isinstance(data, (bytes, bytearray, str)) else data
    if not isinstance(value, dict):
        raise ValueError("%s holds a JSON %s, not an object" % (what, type(value).__name__))
    return value


# -- attempts/<element>/<attempt>.json ------------------------------------------------------------


class AttemptRecord(dict):
    """One attempt's record: the JSON object exactly as written, with typed accessors.

    A dict, because the runner adds what each result tells (summary.py) and versions add fields:
    every record any version wrote reads back whole, and writes back unchanged.
    """

    @classmethod
    def begin(cls, element, attempt, **fields):
        """The runner's record as an attempt starts (its outcome is set by end())."""
        return cls(element=element, attempt=attempt, **fields)

    def end(self, outcome, **fields):
        """Set how the attempt ended, with its error fields or its result's description."""
        self.update(outcome=Outcome(outcome).value, **fields)
        return self

    @classmethod
    def from_json(cls, data):
        """ValueError if data is not a JSON object."""
        return cls(_object(data, "an attempt record"))

    def to_json(self):
        return json.dumps(self, indent=1).encode()

    @property
    def outcome(self):
        """The Outcome, or None (none recorded, or one this version does not know)."""
        return outcome_of(self)

    @property
    def failed(self):
        return self.outcome in FAILED

    @property
    def by_master(self):
        """Written by a master for an attempt whose runner could not tell its end (no log in storage)."""
        return self.get("recorded_by") == "master"


def master_record(element, attempt, outcome, error_type, message, **extra):
    """An attempt record written by the master, for an attempt whose runner could not tell its end."""
    return AttemptRecord(
        {
            "element": element,
            "attempt": attempt,
            "outcome": Outcome(outcome).value,
            "error_type": error_type,
            "message": message,
            "traceback": "",
            **extra,
            "recorded_by": "master",
        }
    )


# -- dispatches/<run>.json ------------------------------------------------------------------------

_SUMMARY_FIELDS = ("run", "started", "finished", "stopped", "errors")


@dataclass(frozen=True)
class RunSummary:
    """What one master run of the job did: when, why it stopped, its errors and its final counts."""

    run: str = ""
    started: Optional[float] = None  # None: not a run (Luigi's flag, as jobs written before it had its own key hold it)
    finished: Optional[float] = None
    stopped: str = ""
    errors: tuple = ()
    counts: dict = field(default_factory=dict)  # total, reused, succeeded, failed, retried, speculated...

    @property
    def is_run(self):
        return self.started is not None

    def count(self, name):
        value = self.counts.get(name, 0)
        return value if isinstance(value, (int, float)) else 0

    @property
    def cost(self):
        """What the run's attempts used, per category (a cost.Ledger; empty for runs before costs)."""
        return Ledger.from_json(self.counts.get("cost"))

    @classmethod
    def of_report(cls, run, started, report, finished=None):
        """The summary of an engine report (its Progress counts, distinct errors and stop reason)."""
        return cls(
            run,
            started,
            time.time() if finished is None else finished,
            report.stopped,
            tuple(report.summary()),
            report.progress.counts(),
        )

    def to_json(self):
        record = {
            "run": self.run,
            "started": self.started,
            "finished": self.finished,
            "stopped": self.stopped,
            "errors": list(self.errors),
            **self.counts,
        }
        return json.dumps(record, indent=1).encode()

    @classmethod
    def from_json(cls, data):
        record = _object(data, "a run summary")
        errors = record.get("errors")
        counts = {k: v for k, v in record.items() if k not in _SUMMARY_FIELDS and k != "elements_shown"}
        return cls(
            str(record.get("run") or ""),
            record.get("started"),
            record.get("finished"),
            record.get("stopped") or "",
            tuple(errors) if isinstance(errors, list) else (),
            counts,
        )


# -- luigi/<run>.json -----------------------------------------------------------------------------


def luigi_flag(run):
    """The map task's note that this run showed its elements to Luigi (so it does so once per run)."""
    return json.dumps({"run": run, "elements_shown": True}).encode()


def elements_shown(data):
    """Whether a flag, or a run summary written before the flag had its own key, says the elements were shown."""
    return bool(_object(data, "Luigi's run flag").get("elements_shown"))


# -- progress.json --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveProgress:
    """The master's counts and running attempts, rewritten with its status page while it runs."""

    updated: float = 0.0
    final: bool = False
    counts: dict = field(default_factory=dict)
    running: dict = field(default_factory=dict)  # attempt id -> (element key, wall-clock start)

    @classmethod
    def of_progress(cls, progress, final, now=None):
        """From the engine's Progress (its counts() and running_attempts)."""
        running = {} if final else {a: tuple(v) for a, v in progress.running_attempts.items()}
        return cls(time.time() if now is None else now, final, progress.counts(), running)

    def running_now(self, max_age=300.0, now=None):
        """attempt -> (element, start) while a master runs the job, None when it ended or went silent for max_age."""
        now = time.time() if now is None else now
        if self.final or now - self.updated > max_age:
            return None
        return dict(self.running)

    def to_json(self):
        record = {
            "updated": self.updated,
            "final": self.final,
            "counts": self.counts,
            "running": {a: list(v) for a, v in self.running.items()},
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data):
        record = _object(data, "the live progress")
        counts, running = record.get("counts"), record.get("running")
        running = (
            {a: tuple(v) for a, v in running.items() if isinstance(v, list) and len(v) == 2}
            if isinstance(running, dict)
            else {}
        )
        return cls(
            float(record.get("updated") or 0),
            bool(record.get("final")),
            counts if isinstance(counts, dict) else {},
            running,
        )


# -- job.json -------------------------------------------------------------------------------------


class JobMeta(dict):
    """job.json: versions, the function, code version, reuse and result settings, where the job ran.

    A dict: backends add their details (image, namespace...), and `kubeface` shows what is there.
    It is unsigned: nothing is run or deleted on its word alone.
    """

    @classmethod
    def from_json(cls, data):
        return cls(_object(data, "job.json"))

    def to_json(self):
        return json.dumps(self, indent=1).encode()

    @property
    def code_version(self):
        return self.get("code_version", "")

    @property
    def layout_version(self):
        """The bucket layout the job was written in (1 if job.json predates the field)."""
        return int(self.get("layout_version", 1))

    @property
    def reuse_any(self):
        """Whether results of any code count, as its last master said (yes for jobs from before code versions)."""
        return self.get("reuse_results") == "any" or "code_version" not in self

    @property
    def updated(self):
        """When a master last dispatched the job (0 if unknown; ValueError or TypeError if altered)."""
        return float(self.get("updated") or 0)


# -- elements.json --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElementIndex:
    """The grid as last dispatched: element keys, labels and parameters, in order."""

    keys: list
    labels: list
    params: list  # {name: value} per element ({} for jobs written before parameters were kept)

    @classmethod
    def of(cls, elements):
        return cls([e.key for e in elements], [e.label for e in elements], [e.params or {} for e in elements])

    def to_json(self):
        return json.dumps(
            {"keys": self.keys, "labels": self.labels, "params": self.params}, separators=(",", ":")
        ).encode()

    @classmethod
    def from_json(cls, data):
        """ValueError when keys and labels are missing or unequal (the file was altered)."""
        record = _object(data, "elements.json")
        if not record:
            return cls([], [], [])
        keys, labels, params = record.get("keys"), record.get("labels"), record.get("params")
        if not (isinstance(keys, list) and isinstance(labels, list) and len(keys) == len(labels)):
            raise ValueError("it lacks its keys and labels")
        if not (isinstance(params, list) and len(params) == len(keys)):
            params = [{}] * len(keys)
        return cls(keys, labels, [p if isinstance(p, dict) else {} for p in params])
