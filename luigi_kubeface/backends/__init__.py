"""One small compute-backend interface, chosen by name; the engine drives it.

A backend launches attempts (each one runs the task runner), reports the ones that ended, and
cancels on request. It knows nothing of elements' results: the engine reads those from storage.
"""

import os
from dataclasses import dataclass, field
from typing import Optional, Protocol

from ..errors import ConfigurationError


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt of one element: everything a backend needs to start the task runner."""

    job_id: str
    job_url: str
    element: str
    attempt: str
    label: str = ""
    # Environment the runner needs but nobody else may read (the job's signing key): a backend
    # hands it over privately (a pipe, a Kubernetes Secret), never in argv, a pod spec or a log.
    secret_env: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class AttemptEnd:
    """An attempt that ended, as the backend saw it.

    exit_code is None when the process never ran or vanished (pod lost, image missing).
    error_type and reason explain an end the runner could not record (OOMKilled, unschedulable).
    fatal marks errors that would hit every element alike (missing image): the job stops.
    retryable False: a retry would fail the same way (no node fits, out of memory).
    interrupted: the infrastructure stopped it (eviction, preemption, lost node): the engine retries
    without counting it against the element's retries.
    """

    attempt: str
    exit_code: Optional[int]
    reason: str = ""
    fatal: bool = False
    log_tail: str = ""
    error_type: str = ""
    retryable: bool = True
    interrupted: bool = False


class Backend(Protocol):
    def launch(self, spec: AttemptSpec) -> None: ...

    def poll(self) -> list:
        """Attempts that ended since the last call (AttemptEnd), without blocking for long."""

    def cancel(self, attempt: str) -> None:
        """Stop an attempt; it is not reported by poll afterwards."""

    def close(self) -> None:
        """Cancel what still runs and release resources."""

    # Optional: adopt(job) -> {element key: attempt id} of attempts an earlier master left running,
    # which the engine then follows instead of launching duplicates.


def _local(settings):
    from .local import LocalBackend

    return LocalBackend(settings)


def _kubernetes(settings):
    from .kubernetes import KubernetesBackend

    return KubernetesBackend(settings)


# Adding a backend means adding one module and one line here.
REGISTRY = {"local": _local, "kubernetes": _kubernetes}


def check_backend_name(name):
    if name not in REGISTRY:
        raise ConfigurationError(
            "unknown backend %r: set [kubeface] backend (or --kubeface-backend) to one of %s"
            % (name, ", ".join(sorted(REGISTRY)))
        )


def open_backend(settings):
    check_backend_name(settings.backend)
    return REGISTRY[settings.backend](settings)


def default_max_in_flight(name):
    """Local processes share this machine's cores; pods are capped where Kubernetes copes."""
    return (os.cpu_count() or 1) if name == "local" else 200
