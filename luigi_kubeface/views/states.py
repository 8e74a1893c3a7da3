"""The states an element is in, as the readers show them: one vocabulary for every table that keys on one.

A str Enum: a state compares, hashes, prints and goes into JSON as its word ("done", "not run"), so the
status page, `kubeface status`/`results` and luigid show what they showed when states were strings.
Its own module: job_state decides an element's state, result_table, status_page and the cli only show it.
"""

from enum import Enum


class ElementState(str, Enum):
    DONE = "done"  # its result is in the bucket
    FAILED = "failed"  # its last attempt failed (the element's error)
    CANCELLED = "cancelled"  # its last attempt was cancelled
    UNFINISHED = "unfinished"  # it ran, no master follows it now, and no result came
    RUNNING = "running"  # a live master runs an attempt of it
    PENDING = "pending"  # a live master has not run it yet
    NOT_RUN = "not run"  # it never ran and no master runs the job

    def __str__(self):
        return self.value

    def __format__(self, spec):
        return format(self.value, spec)
