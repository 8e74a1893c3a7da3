"""Settings as one frozen object, built once from the `[kubeface]` config and per-task overrides.

Nothing else reads config files or environment variables for settings: the engine and the
backends receive this object. `[kubeface]` stays one flat section: Settings carries the keys of
the engine and the job (declared here) and those of every backend (declared by the backend, e.g.
backends/kubernetes/settings.py), so Settings(image=...), replace() and `--kubeface-image` work alike.
"""

import dataclasses
import os
from dataclasses import dataclass

from .backends import settings_classes
from .errors import ConfigurationError, check_ranges
from .storage import settings_classes as storage_settings_classes

MAX_IN_FLIGHT_CEILING = 400  # Kubernetes misbehaves above roughly this many pods at once
BACKEND_SETTINGS = settings_classes()
STORAGE_SETTINGS = storage_settings_classes()  # each storage's own keys (s3_endpoint_url, gcs_key_secret)


@dataclass(frozen=True)
class Settings(*BACKEND_SETTINGS, *STORAGE_SETTINGS):
    backend: str = "local"
    storage_root: str = "kubeface-storage"
    max_in_flight: int = 0  # 0: the backend's default (local: cores, kubernetes: 200)
    local_max_processes: int = 0  # local: element processes at once across every job of one command; 0: cores
    retries: int = 1  # further attempts of an element after its first one failed
    retry_backoff: float = 10.0  # seconds before the first retry; doubles up to max_retry_backoff
    max_retry_backoff: float = 600.0
    failure_budget: float = 0.1  # the job stops once more than this share of elements failed for good
    element_timeout: float = 86400.0  # seconds an attempt may run before it is killed
    poll_interval: float = 0.5
    storage_retry_deadline: float = 600.0  # how long transient storage errors are retried
    lease_seconds: float = 60.0  # a master's hold on its job lapses this long after its last heartbeat
    key_dir: str = "~/.config/luigi-kubeface/keys"  # one signing key per job, never in the bucket
    signing_key_file: str = ""  # one key for every job instead (teams sharing results across machines)
    # -- Your code: shipped with each job (see code_package.py), and which results it may reuse ---
    code_include: str = ""  # more modules (a.b) or files and folders (data too) to ship, comma-separated
    code_exclude: str = ""  # modules never shipped (they must be in the image), comma-separated
    code_max_bytes: int = 64 * 1024 * 1024  # refuse to ship more code than this
    reuse_results: str = "same_code"  # same_code: recompute results of other code; any: Luigi's "output exists"
    # -- Results: which summary value ranks elements (`kubeface results`, the status page) ------
    result_metric: str = ""  # a summary value's name (e.g. accuracy); empty: the first one
    result_direction: str = "maximize"  # maximize: the highest value is best; minimize: the lowest
    # -- Luigi and stragglers ------------------------------------------------------------------
    luigid_elements: int = 500  # a map task lists up to this many elements in luigid, one task each
    speculation: bool = False  # launch one backup attempt of a straggler; the first result wins
    speculation_min_done: float = 0.1  # share of the elements to run that must be done first
    speculation_multiple: float = 3.0  # a straggler ran longer than this multiple of the median
    # -- What a job cost (cost.py): resources requested x running time, priced if prices are set --
    price_cpu_hour: float = 0.0  # price of one core for an hour; 0: no price
    price_gb_hour: float = 0.0  # price of one GB of memory for an hour
    price_gpu_hour: float = 0.0  # price of one GPU for an hour
    spot_discount: float = 0.0  # the share a spot attempt costs less (0.7: 70% off)
    max_cost: float = 0.0  # the job stops early once the work it started costs more; 0: no limit

    def __post_init__(self):
        from .backends import backend_entry, check_backend_name

        check_backend_name(self.backend)
        if not self.storage_root:
            raise ConfigurationError("[kubeface] storage_root is empty: set a directory, gs://bucket/prefix or s3://bucket/prefix")
        if "://" not in self.storage_root:  # local paths are made absolute once, for every process
            object.__setattr__(self, "storage_root", os.path.abspath(os.path.expanduser(self.storage_root)))
        for keys in BACKEND_SETTINGS + STORAGE_SETTINGS:  # each checks its own keys, whichever is used
            if hasattr(keys, "__post_init__"):
                keys.__post_init__(self)
        backend_entry(self.backend).check(self)
        check_ranges(self, [
            ("max_in_flight", 0 <= self.max_in_flight <= MAX_IN_FLIGHT_CEILING,
             "between 0 (backend default) and %d (Kubernetes misbehaves above)" % MAX_IN_FLIGHT_CEILING),
            ("local_max_processes", self.local_max_processes >= 0, "0 (the machine's cores) or more processes"),
            ("retries", 0 <= self.retries <= 100, "between 0 and 100"),
            ("retry_backoff", self.retry_backoff >= 0, "zero or more seconds"),
            ("max_retry_backoff", self.max_retry_backoff >= self.retry_backoff, "at least retry_backoff"),
            ("failure_budget", 0 <= self.failure_budget <= 1, "a share between 0 and 1"),
            ("element_timeout", self.element_timeout > 0, "more than 0 seconds"),
            ("poll_interval", 0 < self.poll_interval <= 60, "between 0 and 60 seconds"),
            ("storage_retry_deadline", self.storage_retry_deadline >= 0, "zero or more seconds"),
            ("lease_seconds", self.lease_seconds > 0, "more than 0 seconds"),
            ("key_dir", bool(self.key_dir), "a private directory for the jobs' signing keys"),
            ("code_max_bytes", self.code_max_bytes > 0, "more than 0 bytes"),
            ("reuse_results", self.reuse_results in ("same_code", "any"),
             "same_code (recompute results made by other code) or any (reuse every result, as Luigi does)"),
            ("result_direction", self.result_direction in ("maximize", "minimize"),
             "maximize (the highest result_metric is best) or minimize (the lowest is)"),
            ("luigid_elements", self.luigid_elements >= 0, "zero or more elements"),
            ("speculation_min_done", 0 < self.speculation_min_done <= 1, "a share above 0, at most 1"),
            ("speculation_multiple", self.speculation_multiple >= 1, "at least 1 (times the median duration)"),
            ("price_cpu_hour", self.price_cpu_hour >= 0, "zero (no price) or more"),
            ("price_gb_hour", self.price_gb_hour >= 0, "zero (no price) or more"),
            ("price_gpu_hour", self.price_gpu_hour >= 0, "zero (no price) or more"),
            ("spot_discount", 0 <= self.spot_discount < 1, "a share from 0 up to (not including) 1"),
            ("max_cost", self.max_cost >= 0, "zero (no limit) or more, in the prices' currency"),
            ("max_cost", not self.max_cost or self.price_cpu_hour or self.price_gb_hour or self.price_gpu_hour,
             "a limit in the prices' currency: set price_cpu_hour, price_gb_hour or price_gpu_hour too"),
        ])

    def job_details(self):
        """Where a job runs, for job.json: what `kubeface reproduce` and `cleanup` need (no secrets)."""
        from .backends import backend_entry

        return {"backend": self.backend, **backend_entry(self.backend).job_details(self)}

    @property
    def code_include_list(self):
        return tuple(p.strip() for p in self.code_include.split(",") if p.strip())

    @property
    def code_exclude_list(self):
        return tuple(p.strip() for p in self.code_exclude.split(",") if p.strip())

    @property
    def cap(self):
        """The hard cap on attempts in flight."""
        from .backends import default_max_in_flight

        return self.max_in_flight or default_max_in_flight(self.backend)

    def replace(self, **overrides):
        """A copy with overrides, refusing names that are not settings (typos must not pass silently)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(
                "unknown kubeface setting(s) %s: known settings are %s" % (", ".join(unknown), ", ".join(sorted(known)))
            )
        return dataclasses.replace(self, **overrides)

