"""One small compute-backend interface, chosen by name; the engine drives it.

A backend launches attempts (each one runs the task runner), reports the ones that ended, and
cancels on request. It knows nothing of elements' results: the engine reads those from storage.
"""

import os
import time
from dataclasses import dataclass, field
from typing import Optional

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


class Backend:
    """What every backend does (launch, poll, cancel, close) and the optional parts, with their defaults.

    The engine calls only what is declared here; a backend overrides an optional part to change
    how the engine treats its attempts. tests/backends/test_backend_contract.py runs one suite of
    checks against every backend.
    """

    # Seconds added to element_timeout: a backend whose attempts start late (pods) allows for it.
    timeout_slack = 0.0
    # True: on a stop without failure (Ctrl-C), leave attempts running for a later master to adopt.
    leaves_attempts_running = False

    def launch(self, spec: AttemptSpec) -> None:
        raise NotImplementedError

    def poll(self) -> list:
        """Attempts that ended since the last call (AttemptEnd), without blocking for long."""
        raise NotImplementedError

    def cancel(self, attempt: str) -> None:
        """Stop an attempt; it is not reported by poll afterwards."""
        raise NotImplementedError

    def close(self) -> None:
        """Cancel what still runs and release resources."""

    def wait(self, seconds: float) -> None:
        """Block until an attempt may have ended, at most seconds (a backend that can wake early does)."""
        time.sleep(seconds)

    def started(self, attempt: str, launched: float) -> Optional[float]:
        """When the attempt began to run (engine's clock; launched: when the engine launched it), or None
        while it still waits for room: element_timeout runs from here, and a waiting attempt never times out."""
        return launched

    def adopt(self, job) -> dict:
        """{element key: attempt id} of attempts an earlier master left running, for the engine to follow."""
        return {}


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
