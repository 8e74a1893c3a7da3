"""What the engine and a backend exchange: the attempt to start (AttemptSpec), the attempt that ended
(AttemptEnd). Plain data, standard library only: the judge reads an AttemptEnd without the backends' registry.
"""

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt of one element: everything a backend needs to start the task runner."""

    job_id: str
    job_url: str
    element: str
    attempt: str
    label: str = ""
    # What the attempt requests (cost.Request.to_record()), for the runner's record: see cost.py.
    resources: dict = field(default_factory=dict, compare=False)
    # Environment the runner needs but nobody else may read (the job's signing key): a backend
    # hands it over privately (a pipe, a Kubernetes Secret), never in argv, a pod spec or a log.
    secret_env: dict = field(default_factory=dict, repr=False, compare=False)
    # The element's history in this run, for backends that adapt its next attempt to it (Kubernetes:
    # more memory after an OOM, off spot after preemptions).
    out_of_memory: int = 0
    interruptions: int = 0


@dataclass(frozen=True)
class AttemptEnd:
    """An attempt that ended, as the backend saw it.

    exit_code is None when the process never ran or vanished (pod lost, image missing).
    error_type and reason explain an end the runner could not record (OOMKilled, unschedulable).
    fatal marks errors that would hit every element alike (missing image): the job stops.
    retryable False: a retry would fail the same way (no node fits, out of memory).
    interrupted: the infrastructure stopped it (eviction, preemption, lost node): the engine retries
    without counting it against the element's retries.
    more_memory: it ran out of memory and the backend gives the element's next attempt more: the
    engine runs it again at once, not counted against its retries (the backend's ceiling bounds it).
    placement: what the attempt had, when the backend knows it (memory_limit, spot), for the master's record.
    """

    attempt: str
    exit_code: Optional[int]
    reason: str = ""
    fatal: bool = False
    log_tail: str = ""
    error_type: str = ""
    retryable: bool = True
    interrupted: bool = False
    more_memory: bool = False
    placement: dict = field(default_factory=dict)
