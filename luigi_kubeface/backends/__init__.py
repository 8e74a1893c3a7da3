"""One small compute-backend interface, chosen by name; the engine drives it.

A backend launches attempts (each one runs the task runner), reports the ones that ended, and
cancels on request. It knows nothing of elements' results: the engine reads those from storage.
"""

import importlib
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from .. import cost
from ..errors import ConfigurationError
from .attempts import AttemptEnd, AttemptSpec  # noqa: F401 - what a backend receives and reports


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


def _nothing(settings):
    return None


def _no_details(settings):
    return {}


def _one_core(settings, out_of_memory=0):
    return cost.LOCAL


@dataclass(frozen=True)
class BackendEntry:
    """What the rest of the code knows of a backend, found by its name: nothing outside it names one.

    settings: a frozen dataclass of the backend's own [kubeface] keys (Settings composes one, as
    backend_settings, when this backend is selected); its keys must not be another owner's.
    max_in_flight_ceiling: the highest [kubeface] max_in_flight this backend accepts (0: no ceiling),
    and ceiling_reason why.
    check(settings) refuses other settings a job on it cannot use; job_details(settings) goes into
    job.json. tools: the module of its command-line tools (a BackendTools), imported when used.
    request(settings, out_of_memory): the cost.Request of an attempt after its element's out_of_memory OOMs
    (what a job cost: a grown pod is charged what it requested); by default one core.
    """

    open: Callable
    max_in_flight: int = 200  # the cap when [kubeface] max_in_flight is 0
    settings: Optional[type] = None
    max_in_flight_ceiling: int = 0
    ceiling_reason: str = ""
    check: Callable = _nothing
    job_details: Callable = _no_details
    tools: str = ""
    request: Callable = _one_core  # what each attempt requests (a cost.Request), for what a job cost


class BackendTools(Protocol):
    """What `kubeface` asks of the backend a job ran on: live state outside storage.

    Each call gets the job, its job.json (meta: a hint, unsigned), the configured settings and the
    command's parsed arguments (with the flags add_arguments added).
    """

    def add_arguments(self, command) -> None:
        """Add the flags the tools read (e.g. where the cluster is) to a `logs` or `cleanup` command."""

    def follow_log(self, job, meta, settings, args, element, attempt, out) -> bool:
        """Stream a running attempt's log to out until it ends; False when none runs (the caller then waits
        for the log in storage). attempt: the running attempt's id if known, else None."""

    def cleanup(self, job, meta, settings, args, dry_run) -> list:
        """Delete (or on a dry run, only find) what the job left running; a description of each thing."""


# Adding a backend means adding one module (or package) and one entry here: a BackendEntry, or the dotted
# path "module:attribute" of one, imported the first time the backend is named (a local job never imports
# the Kubernetes backend). A bare function settings -> backend is an entry with defaults.
REGISTRY = {
    "local": BackendEntry(_local, max_in_flight=os.cpu_count() or 1),  # processes share this machine's cores
    "kubernetes": "luigi_kubeface.backends.kubernetes:ENTRY",  # its keys, checks and opener
}
_LOADED: dict = {}  # dotted path -> its BackendEntry


def backend_entry(name):
    """The registry's entry for name, its module imported on first use."""
    check_backend_name(name)
    entry = REGISTRY[name]
    if isinstance(entry, str):
        if entry not in _LOADED:
            module, _, attribute = entry.partition(":")
            _LOADED[entry] = getattr(importlib.import_module(module), attribute)
        entry = _LOADED[entry]
    return entry if isinstance(entry, BackendEntry) else BackendEntry(entry)


def check_backend_name(name):
    if name not in REGISTRY:
        raise ConfigurationError(
            "unknown backend %r: set [kubeface] backend (or --kubeface-backend) to one of %s"
            % (name, ", ".join(sorted(REGISTRY)))
        )


def open_backend(settings):
    return backend_entry(settings.backend).open(settings)


def attempt_request(settings, out_of_memory=0):
    """The priced cost.Request of an attempt of a job on its backend, after its element's out_of_memory OOMs."""
    request = backend_entry(settings.backend).request
    return cost.request_of(settings, lambda s: request(s, out_of_memory) if out_of_memory else request(s))


def default_max_in_flight(name):
    return backend_entry(name).max_in_flight


def backend_tools(name):
    """The command-line tools (BackendTools) of the named backend, or None for a backend without any."""
    if name not in REGISTRY or not backend_entry(name).tools:
        return None
    return importlib.import_module("%s.%s" % (__name__, backend_entry(name).tools))


def all_backend_tools():
    return [tools for tools in (backend_tools(name) for name in REGISTRY) if tools is not None]
