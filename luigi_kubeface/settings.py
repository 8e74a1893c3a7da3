"""Settings as one frozen object, built once from the `[kubeface]` config and per-task overrides.

Nothing else reads config files or environment variables for settings: the engine and the
backends receive this object. It is composed: the core keys (declared here), every storage's own
settings (storages are opened by URL, so each one's keys apply to the whole process), and the
selected backend's own settings object (backend_settings; e.g. backends/kubernetes/settings.py).
`[kubeface]` stays one flat section: key_map() is the one place a flat key is mapped to its owner,
so Settings(image=...), replace(), `settings.image` and `--kubeface-image` all work alike.

Only the selected backend's keys are checked. A key of another registered backend is accepted (one
luigi.cfg serves `backend = local` and `backend = kubernetes`) and kept as given: it is checked when
some code asks for that backend's settings (settings_of; `kubeface logs` of a job that ran on pods).
"""

import os
from dataclasses import dataclass, field

from .errors import ConfigurationError, check_ranges
from .settings_fields import COMPOSED, key_map, not_default, setting, values_of


def _composed(help):
    return field(default=None, metadata={COMPOSED: True, "help": help})


@dataclass(frozen=True, init=False)
class Settings:
    """Every job's keys: where it runs and keeps its state, retries, signing, code shipping, results."""

    backend: str = setting(
        "local",
        "Where elements run: `local` (a fresh process per element attempt) or "
        "`kubernetes` (a pod per attempt; its own keys follow in luigi.cfg).",
    )
    storage_root: str = setting(
        "kubeface-storage",
        "The bucket: a local directory (created if its parent exists), "
        "`gs://bucket/prefix` or `s3://bucket/prefix`; each job lives under "
        "`<storage_root>/<job-id>/`.",
    )
    max_in_flight: int = setting(
        0, "Hard cap on attempts at once; 0: the backend's default (local: the cores, kubernetes: 200, at most 400)."
    )
    local_max_processes: int = setting(
        0,
        "Local backend: element processes at once across every job of one "
        "`luigi` command (its forked workers share them); 0: the machine's cores.",
    )
    retries: int = setting(1, "Further attempts of an element after its first one failed (0 to 100).")
    retry_backoff: float = setting(10.0, "Seconds before the first retry, doubling up to `max_retry_backoff`.")
    max_retry_backoff: float = setting(600.0, "The longest wait before a retry, in seconds.")
    failure_budget: float = setting(
        0.1,
        "The job stops early once more than this share of its elements failed "
        "for good (or the first 10 to finish all failed).",
    )
    element_timeout: float = setting(
        86400.0, "Seconds an attempt may run before it is killed and reported as a timeout."
    )
    poll_interval: float = setting(0.5, "Seconds between the master's looks at running attempts.")
    storage_retry_deadline: float = setting(
        600.0, "How long transient storage errors (outages, 5xx, 429) are retried, in seconds."
    )
    lease_seconds: float = setting(
        60.0,
        "One master runs a job at a time, holding its lease: a second master "
        "waits and reuses its results; a master that died is taken over this many "
        "seconds after its last heartbeat (at once if it ran on the same machine).",
    )
    key_dir: str = setting(
        "~/.config/luigi-kubeface/keys",
        "Where the master keeps each job's signing key (mode 0600, never in the bucket; a rerun needs the same file).",
    )
    signing_key_file: str = setting(
        "", "One key file for every job instead, for teams sharing results across machines (docs/security.md)."
    )
    code_include: str = setting(
        "",
        "More modules (`pkg.plugins`) or files and folders (data too) to ship with "
        "each job, comma-separated; your own modules ship anyway.",
    )
    code_exclude: str = setting("", "Modules never shipped, comma-separated: they must then be in the image.")
    code_max_bytes: int = setting(64 * 1024 * 1024, "Refuse to ship more code than this many bytes (64 MiB).")
    reuse_results: str = setting(
        "same_code",
        "`same_code`: a result counts only for the code version that made "
        'it (edits recompute); `any`: any result counts, as Luigi\'s "the output exists".',
    )
    result_metric: str = setting(
        "",
        "The summary value (e.g. `accuracy`) that ranks elements in `kubeface "
        "results` and on the status page; empty: the first one a result has.",
    )
    result_direction: str = setting(
        "maximize", "`maximize`: the highest `result_metric` is best; `minimize`: the lowest."
    )
    luigid_elements: int = setting(
        500,
        "A map task lists up to this many elements in luigid as tasks of their "
        "own; a larger job lists only elements without a result (each with its error).",
    )
    speculation: bool = setting(
        False, "Launch one backup attempt of a straggler; the first result wins and the other attempt is cancelled."
    )
    speculation_min_done: float = setting(0.1, "Speculation starts once this share of the elements to run is done.")
    speculation_multiple: float = setting(3.0, "A straggler has run longer than this multiple of the median duration.")
    price_cpu_hour: float = setting(0.0, "The price of one core for an hour (what a job cost); 0: no price.")
    price_gb_hour: float = setting(0.0, "The price of one GB of memory for an hour; 0: no price.")
    price_gpu_hour: float = setting(0.0, "The price of one GPU for an hour; 0: no price.")
    spot_discount: float = setting(0.0, "The share a spot attempt costs less (0.7: 70% off).")
    max_cost: float = setting(
        0.0,
        "The job stops early, as the failure budget does, once the work it started "
        "costs more than this (in the prices' currency); 0: no limit.",
    )
    # -- Composed: the other owners' settings objects, made by __init__ from the flat keys ---------------
    backend_settings: object = _composed("the selected backend's own settings (None for a backend without keys)")
    storage_settings: object = _composed("{storage scheme: its own settings}, for every storage with keys")
    other_backends: object = _composed("{key: value} set for backends other than the selected one, unchecked")

    def __init__(self, **values):
        """Settings from flat keys, as `[kubeface]` spells them; a name that is no key is refused."""
        from .backends import backend_entry, check_backend_name

        keys = all_keys()
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise ConfigurationError(
                "unknown kubeface setting(s) %s: known settings are %s" % (", ".join(unknown), ", ".join(sorted(keys)))
            )
        for name, key in keys.items():
            if key.owner == "core":
                object.__setattr__(self, name, values.get(name, key.default))
        check_backend_name(self.backend)
        mine = backend_entry(self.backend).settings
        given = {name: value for name, value in values.items() if keys[name].owner != "core"}
        object.__setattr__(self, "backend_settings", _build(mine, given, keys))
        object.__setattr__(
            self,
            "storage_settings",
            {scheme: _build(declared_by, given, keys) for scheme, declared_by in _storage_classes().items()},
        )
        object.__setattr__(
            self,
            "other_backends",
            not_default(
                {
                    name: value
                    for name, value in given.items()
                    if keys[name].owner.startswith("backend ") and keys[name].declared_by is not mine
                },
                keys,
            ),
        )
        object.__setattr__(self, "_others", {})  # other backends' settings objects, built when asked for
        self._check()

    def _check(self):
        from .backends import backend_entry

        if not self.storage_root:
            raise ConfigurationError(
                "[kubeface] storage_root is empty: set a directory, gs://bucket/prefix or s3://bucket/prefix"
            )
        if "://" not in self.storage_root:  # local paths are made absolute once, for every process
            object.__setattr__(self, "storage_root", os.path.abspath(os.path.expanduser(self.storage_root)))
        entry = backend_entry(self.backend)
        entry.check(self)
        ceiling = entry.max_in_flight_ceiling
        check_ranges(
            self,
            [
                (
                    "max_in_flight",
                    0 <= self.max_in_flight <= (ceiling or self.max_in_flight),
                    "between 0 (the backend's default) and %d (%s)" % (ceiling, entry.ceiling_reason)
                    if ceiling
                    else "0 (the backend's default) or more",
                ),
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
                (
                    "reuse_results",
                    self.reuse_results in ("same_code", "any"),
                    "same_code (recompute results made by other code) or any (reuse every result, as Luigi does)",
                ),
                (
                    "result_direction",
                    self.result_direction in ("maximize", "minimize"),
                    "maximize (the highest result_metric is best) or minimize (the lowest is)",
                ),
                ("luigid_elements", self.luigid_elements >= 0, "zero or more elements"),
                ("speculation_min_done", 0 < self.speculation_min_done <= 1, "a share above 0, at most 1"),
                ("speculation_multiple", self.speculation_multiple >= 1, "at least 1 (times the median duration)"),
                ("price_cpu_hour", self.price_cpu_hour >= 0, "zero (no price) or more"),
                ("price_gb_hour", self.price_gb_hour >= 0, "zero (no price) or more"),
                ("price_gpu_hour", self.price_gpu_hour >= 0, "zero (no price) or more"),
                ("spot_discount", 0 <= self.spot_discount < 1, "a share from 0 up to (not including) 1"),
                ("max_cost", self.max_cost >= 0, "zero (no limit) or more, in the prices' currency"),
                (
                    "max_cost",
                    not self.max_cost or self.price_cpu_hour or self.price_gb_hour or self.price_gpu_hour,
                    "a limit in the prices' currency: set price_cpu_hour, price_gb_hour or price_gpu_hour too",
                ),
            ],
        )

    def __getattr__(self, name):
        """A storage's or a backend's key, read from its owner's settings object (settings.image, .s3_region)."""
        if name.startswith("_") or name in _COMPOSED:  # pickle looks for __setstate__ before the fields are there
            raise AttributeError(name)
        for owned in (self.backend_settings, *self.storage_settings.values()):  # the usual case, first
            if name in getattr(owned, "__dataclass_fields__", ()):
                return getattr(owned, name)
        key = all_keys().get(name)
        if key is None or key.owner == "core":
            raise AttributeError("%r is not a kubeface setting" % name)
        return getattr(self._settings_of(key.declared_by), name)

    def settings_of(self, backend):
        """The named backend's own settings (None if it has no keys): checked now if it is not the selected one."""
        from .backends import backend_entry

        declared_by = backend_entry(backend).settings
        return None if declared_by is None else self._settings_of(declared_by)

    def _settings_of(self, declared_by):
        if isinstance(self.backend_settings, declared_by):
            return self.backend_settings
        if declared_by not in self._others:
            self._others[declared_by] = _build(declared_by, self.other_backends, all_keys())
        return self._others[declared_by]

    def values(self):
        """{key: value} of every key set or selected, flat: Settings(**settings.values()) is an equal copy."""
        found = {name: getattr(self, name) for name, key in all_keys().items() if key.owner == "core"}
        for owned in (self.backend_settings, *self.storage_settings.values()):
            found.update(values_of(owned))
        return {**self.other_backends, **found}

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
        return Settings(**{**self.values(), **overrides})


_COMPOSED = ("backend_settings", "storage_settings", "other_backends")


def _build(declared_by, given, keys):
    """One owner's settings object from the flat keys given (the rest take their defaults); None: no keys."""
    if declared_by is None:
        return None
    return declared_by(**{name: value for name, value in given.items() if keys[name].declared_by is declared_by})


def _storage_classes():
    from .storage import settings_classes

    return settings_classes()


def owners():
    """((label, settings dataclass), ...): the core, then each storage and each backend with keys, in order."""
    from .backends import REGISTRY, backend_entry

    found = [("core", Settings)] + [("storage " + s, c) for s, c in _storage_classes().items()]
    for name in REGISTRY:
        declared_by = backend_entry(name).settings
        if declared_by is not None and declared_by not in [c for _, c in found]:  # two entries may share one
            found.append(("backend " + name, declared_by))
    return tuple(found)


def all_keys():
    """{key: Key} of the flat `[kubeface]` section: the one place a key is mapped to its owner."""
    return key_map(owners())


all_keys()  # a key two owners declare fails here, at import, naming both
