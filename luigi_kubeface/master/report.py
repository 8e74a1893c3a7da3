"""What a run reports: its live Progress (the counts a status page and a run summary read) and its JobReport."""

import re
from collections import Counter
from dataclasses import dataclass, field

from ..cost import Ledger


# The counts in the order a run summary and a status page show them.
COUNTS = ("total", "reused", "pending", "running", "starting", "succeeded", "failed", "retried", "speculated")


@dataclass
class Progress:
    """A run's counts. pending is derived, never stored: the elements waiting in the run's queues (waiting)."""

    total: int = 0
    reused: int = 0
    running: int = 0
    starting: int = 0  # launched, waiting for a slot or a node (a pod not yet running)
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    speculated: int = 0  # backup attempts launched for stragglers
    # Read-only live view for status pages: attempt id -> (element key, wall-clock start time).
    running_attempts: dict = field(default_factory=dict, repr=False, compare=False)
    cost: Ledger = field(default_factory=Ledger, repr=False, compare=False)  # used per category
    # The run's queues of elements not launched yet (its todo and its retries waiting): pending counts them.
    waiting: tuple = field(default=(), repr=False, compare=False)

    @property
    def pending(self):
        return sum(len(queue) for queue in self.waiting)

    @property
    def done(self):
        return self.reused + self.succeeded

    def describe(self):
        return "%d elements: %d reused, %d succeeded, %d running, %d pending, %d failed, %d retried, %d speculated" % (
            self.total,
            self.reused,
            self.succeeded,
            self.running,
            self.pending + self.starting,
            self.failed,
            self.retried,
            self.speculated,
        )

    def counts(self):
        """The counts alone, and the cost per category (what a dispatch summary records)."""
        return dict({name: getattr(self, name) for name in COUNTS}, cost=self.cost.to_json())


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
