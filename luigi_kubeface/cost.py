"""What a job cost: the resources each attempt requested times its running time, totalled per job.

Pure and dependency-free (the runner imports it). An attempt's Request is what it asked of the
backend (CPU cores, memory in GB, GPUs, spot or not) and, when prices are set, what that costs per
hour; its Usage is the request times the seconds it ran. The master charges each attempt that ended
to one category of its Ledger:

    succeeded   the attempt whose result counts
    failed      the last attempt of an element that failed for good
    retried     failed attempts that were run again
    speculated  attempts of an element another attempt of it (a backup, or the original) beat
    preempted   attempts the infrastructure stopped (evictions, spot preemptions, lost nodes)
    cancelled   attempts the master stopped as the job ended early (failure budget, max_cost, Ctrl-C)

Memory is counted in GB of 2**30 bytes (Kubernetes' Gi), as cloud price lists count it.
"""

import json
import re
from dataclasses import asdict, dataclass, field, fields

CATEGORIES = ("succeeded", "failed", "retried", "speculated", "preempted", "cancelled")
RESOURCES_ENV = "KUBEFACE_RESOURCES"  # the attempt's Request as JSON, for the runner to put in its record

_QUANTITY = re.compile(r"^([0-9]*\.?[0-9]+)([a-zA-Z]*)$")
_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text):
    """A Kubernetes quantity ("500m", "2", "1.5Gi") as a number, or None when it is empty or not one."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _UNITS:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Request:
    """What one attempt requested, and what that costs per hour (0: no prices set)."""

    cpu: float = 1.0
    memory_gb: float = 0.0
    gpus: float = 0.0
    spot: bool = False
    price_hour: float = 0.0

    def to_record(self):
        return asdict(self)

    @classmethod
    def from_record(cls, record):
        """From an attempt record's "resources" (None when it has none or they are not numbers)."""
        if not isinstance(record, dict):
            return None
        try:
            return cls(
                float(record.get("cpu", 0)),
                float(record.get("memory_gb", 0)),
                float(record.get("gpus", 0)),
                bool(record.get("spot", False)),
                float(record.get("price_hour", 0)),
            )
        except (TypeError, ValueError):
            return None


LOCAL = Request(cpu=1.0)  # a local process: one core of this machine for as long as it runs; memory uncharged


@dataclass(frozen=True)
class Prices:
    """[kubeface] price_cpu_hour, price_gb_hour, price_gpu_hour and spot_discount."""

    cpu_hour: float = 0.0
    gb_hour: float = 0.0
    gpu_hour: float = 0.0
    spot_discount: float = 0.0  # the share a spot attempt costs less

    @classmethod
    def of(cls, settings):
        return cls(settings.price_cpu_hour, settings.price_gb_hour, settings.price_gpu_hour, settings.spot_discount)

    @property
    def set(self):
        return bool(self.cpu_hour or self.gb_hour or self.gpu_hour)

    def priced(self, request):
        """request with its price per hour."""
        hour = self.cpu_hour * request.cpu + self.gb_hour * request.memory_gb + self.gpu_hour * request.gpus
        if request.spot:
            hour *= 1 - self.spot_discount
        return Request(request.cpu, request.memory_gb, request.gpus, request.spot, hour)


def request_of(settings, backend_request):
    """The priced Request of each attempt of a job: backend_request(settings) says what it asks for."""
    return Prices.of(settings).priced(backend_request(settings))


def kubernetes_request(settings, memory_request=None):
    """A pod's requests: cpu_request cores, memory_request GB (or the one given: an OOM-grown pod's), gpus,
    on spot nodes or not."""
    memory = settings.memory_request if memory_request is None else memory_request
    return Request(
        quantity(settings.cpu_request) or 0.0,
        (quantity(memory) or 0.0) / 2**30,
        float(settings.gpus),
        bool(settings.spot),
    )


@dataclass
class Usage:
    """Attempts and what they used: seconds of running time, core-, GB- and GPU-hours, and cost."""

    attempts: int = 0
    seconds: float = 0.0
    cpu_hours: float = 0.0
    gb_hours: float = 0.0
    gpu_hours: float = 0.0
    cost: float = 0.0

    @classmethod
    def of(cls, request, seconds):
        seconds, hours = max(0.0, seconds), max(0.0, seconds) / 3600.0
        return cls(
            1, seconds, request.cpu * hours, request.memory_gb * hours, request.gpus * hours, request.price_hour * hours
        )

    def add(self, other):
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_json(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, record):
        """Tolerant: a field that is missing or not a number counts 0."""
        values = {}
        for f in fields(cls):
            value = record.get(f.name, 0) if isinstance(record, dict) else 0
            values[f.name] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
        return cls(**values)


@dataclass
class Ledger:
    """A job's (or one run's) Usage per category."""

    usage: dict = field(default_factory=lambda: {c: Usage() for c in CATEGORIES})

    def charge(self, category, request, seconds):
        if category not in CATEGORIES:
            raise ValueError("unknown cost category %r (one of %s)" % (category, ", ".join(CATEGORIES)))
        self.usage[category].add(Usage.of(request, seconds))

    def total(self):
        total = Usage()
        for usage in self.usage.values():
            total.add(usage)
        return total

    def merge(self, other):
        for category, usage in other.usage.items():
            self.usage.setdefault(category, Usage()).add(usage)
        return self

    def to_json(self):
        return {category: usage.to_json() for category, usage in self.usage.items()}

    @classmethod
    def from_json(cls, record):
        record = record if isinstance(record, dict) else {}
        return cls({c: Usage.from_json(record.get(c)) for c in CATEGORIES})


def total_of(ledgers):
    """One Ledger of many (a job's runs)."""
    total = Ledger()
    for ledger in ledgers:
        total.merge(ledger)
    return total


def attempt_usage(record):
    """An attempt record's Usage (its resources times its duration), or None when it tells neither."""
    request = Request.from_record((record or {}).get("resources"))
    duration = (record or {}).get("duration")
    if request is None or not isinstance(duration, (int, float)):
        return None
    return Usage.of(request, duration)


def element_usage(records):
    """An element's own Usage: the sum over its attempt records (None when none tells its cost)."""
    total = None
    for record in records:
        usage = attempt_usage(record)
        if usage is not None:
            total = (total or Usage()).add(usage)
    return total


def over_budget(spent, max_cost):
    """Why the job stops for its cost, or "" while it goes on. spent: the cost of the work started so far."""
    if max_cost and spent > max_cost:
        return (
            "the work started cost %.4g, more than max_cost = %g: raise [kubeface] max_cost to run the rest "
            "(finished results are kept)" % (spent, max_cost)
        )
    return ""


def request_from_env(environ):
    """The Request a backend handed the runner (RESOURCES_ENV), as a record's "resources"; {} if none."""
    try:
        request = Request.from_record(json.loads(environ.get(RESOURCES_ENV) or "{}") or None)
    except ValueError:
        return {}
    return request.to_record() if request is not None else {}


def breakdown(ledger):
    """(category, Usage) of the categories with attempts, in CATEGORIES order, then ("total", its total)."""
    rows = [(c, ledger.usage[c]) for c in CATEGORIES if ledger.usage.get(c) and ledger.usage[c].attempts]
    return rows + [("total", ledger.total())]


def describe(usage, priced):
    """One line for people: "3 attempts, 120 s, 0.033 core-h, 0.033 GB-h, 0 GPU-h, cost 0.0012"."""
    text = "%d attempts, %.0f s, %.3g core-h, %.3g GB-h, %.3g GPU-h" % (
        usage.attempts,
        usage.seconds,
        usage.cpu_hours,
        usage.gb_hours,
        usage.gpu_hours,
    )
    return text + (", cost %.4g" % usage.cost if priced else "")
