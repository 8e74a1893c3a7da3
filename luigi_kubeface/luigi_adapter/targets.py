"""Luigi targets over result blobs, answered from one listing per job instead of one request each."""

import os
import threading
import time

import luigi

from ..bucket import layout as naming
from ..errors import KubefaceError
from ..results import Results


class ResultIndex:
    """A per-job snapshot of which elements have results, refreshed when older than asked.

    Results are written once and never removed during a run, so a cached "done" stays true; only
    a cached "missing" needs a fresh listing before it is believed. Snapshots belong to the process
    that listed: Luigi forks workers, and a child's job run writes results its parent never sees
    listed, so a fork starts with no snapshot of its own.
    """

    _snapshots = {}  # (pid, job url) -> (time of listing, set of finished element keys)
    _lock = threading.Lock()

    @classmethod
    def finished(cls, job, max_age):
        where = (os.getpid(), job.url)
        with cls._lock:
            taken, keys = cls._snapshots.get(where, (0.0, None))
        if keys is None or time.monotonic() - taken > max_age:
            taken, keys = time.monotonic(), job.store.finished()
            with cls._lock:
                cls._snapshots[where] = (taken, keys)
        return keys

    @classmethod
    def has(cls, job, key, max_age):
        if key in cls.finished(job, max_age=float("inf")):
            return True
        return key in cls.finished(job, max_age)

    @classmethod
    def forget(cls, job):
        with cls._lock:
            cls._snapshots.pop((os.getpid(), job.url), None)


class ResultTarget(luigi.Target):
    """One element's result blob."""

    def __init__(self, job, key, max_age=2.0):
        self.job = job
        self.key = key
        self.max_age = max_age

    def exists(self):
        return ResultIndex.has(self.job, self.key, self.max_age)

    def load(self):
        return self.job.store.load_result(self.key)

    def __str__(self):
        return self.job.url + "/" + naming.result_key(self.key)


class CollectedResults(luigi.Target):
    """All results of a map task in grid order; `load()` is lazy, one blob per access."""

    def __init__(self, job, keys):
        self.job = job
        self.keys = list(keys)

    def exists(self):
        finished = ResultIndex.finished(self.job, max_age=0)
        return all(k in finished for k in self.keys)

    def load(self):
        return Results(self.job, self.keys)

    def records(self):
        """Each element's parameters and result summary, from the attempt records (see Results.records)."""
        return self.load().records()

    def to_pandas(self):
        return self.load().to_pandas()

    def __str__(self):
        return "%s (%d results)" % (self.job.url, len(self.keys))


class AwaitingInputs(luigi.Target):
    """A map task's results while its requirements are incomplete: its grid may read their outputs,
    so it is not asked for yet. Missing until they are complete; then the CollectedResults it names."""

    def __init__(self, task):
        self.task = task

    def _results(self):
        if not self.task.inputs_ready():
            raise KubefaceError(
                "the results of %s are not known yet: its requirements (%s) are incomplete, and "
                "its grid may read their outputs. Require %s from a task that runs after it"
                % (self.task, ", ".join(map(str, self.task.incomplete_inputs())), self.task)
            )
        return self.task.output()

    def exists(self):
        return self.task.inputs_ready() and self._results().exists()

    def load(self):
        return self._results().load()

    def records(self):
        return self._results().records()

    def to_pandas(self):
        return self._results().to_pandas()

    def __str__(self):
        return "%s (awaiting its requirements)" % self.task
