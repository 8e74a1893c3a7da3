"""Every key in a job's storage prefix is built here, and element identities too.

Layout of a job under ``<storage-root>/<job-id>/``::

    job.json                       master versions and settings summary (human readable)
    elements.json                  the grid as last dispatched: element keys and labels, in order
    status.html                    the job's status page, refreshed while it runs
    progress.json                  the master's live counts and running attempts, with the page
    function.pkl                   the element function, pickled once per job
    code/<digest>.zip              the user's own modules the function needs, content-addressed
    shared/<name>-<digest>.pkl     shared inputs, uploaded once for all elements
    inputs/<element>.pkl           the arguments of one element
    results/<element>.<version>.pkl  its result for one code version, written once (one listing
                                   answers "what is done"); results/<element>.pkl: written before
                                   code versions existed
    attempts/<element>/<attempt>.json   outcome of each attempt (error, traceback, timing)
    logs/<element>/<attempt>.log        stdout and stderr of each attempt
    dispatches/<run-id>.json       summary of each master run of the job (records.RunSummary)
    luigi/<run-id>.json            the map task showed the run's elements to Luigi (before this key
                                   existed, an "elements_shown" field of the run's summary said so)
    lease.json                     who runs the job now: host, pid, run id, since, last renewal
                                   (written by compare-and-swap only, see lease.py)
    quarantine/<key>.<time>-<rand> blobs refused as truncated, altered or unsigned, kept for a look
"""

import dataclasses
import enum
import hashlib
import io
import json
import os
import pickle
import re
import time

from .errors import ConfigurationError

JOB_META = "job.json"
ELEMENTS = "elements.json"
STATUS_PAGE = "status.html"
PROGRESS = "progress.json"
LEASE = "lease.json"
LOGS_PREFIX = "logs/"
FUNCTION = "function.pkl"
CODE_PREFIX = "code/"
RESULTS_PREFIX = "results/"
ATTEMPTS_PREFIX = "attempts/"
INPUTS_PREFIX = "inputs/"
DISPATCHES_PREFIX = "dispatches/"
LUIGI_PREFIX = "luigi/"
QUARANTINE_PREFIX = "quarantine/"

_KEY_LENGTH = 24  # hex characters of sha256: 96 bits, collision-free at any realistic grid size
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,199}$")


class _CanonicalPickler(pickle._Pickler):
    """Plain pickle (the pure-Python pickler writes the same bytes), but sets inside other objects
    are written in canonical member order instead of hash order."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_set(self, obj):
        self.write(pickle.EMPTY_SET)
        self.memoize(obj)
        members = _sorted_canonically(obj)
        for start in range(0, len(members), 1000):
            self.write(pickle.MARK)
            for member in members[start:start + 1000]:
                self.save(member)
            self.write(pickle.ADDITEMS)

    def _save_frozenset(self, obj):
        self.write(pickle.MARK)
        for member in _sorted_canonically(obj):
            self.save(member)
        self.write(pickle.FROZENSET)
        self.memoize(obj)

    dispatch[set] = _save_set
    dispatch[frozenset] = _save_frozenset


def _text(encoded):
    return json.dumps(encoded, sort_keys=True)


def _sorted_canonically(values):
    return sorted(values, key=lambda v: _text(_canonical(v)))


def _refuse(value, why, fix):
    raise ConfigurationError("a value of type %s.%s cannot be encoded into a stable element key: %s. %s"
                             % (type(value).__module__, type(value).__qualname__, why, fix))


_PLAIN_TYPES = frozenset([str, int, bool, type(None)])


def _canonical(value):
    """Map a parameter value to JSON whose text does not depend on dict or set order, or on the process.

    ConfigurationError for a value with no such encoding (its key would differ between runs).
    """
    kind = type(value)
    if kind in _PLAIN_TYPES:  # exactly these types (no enum member is one): the common case, first
        return value
    if kind is float:
        return {"__float__": value.hex()}
    if isinstance(value, enum.Enum):  # before int and str: an IntEnum member is not its int
        return {"__enum__": type(value).__module__ + "." + type(value).__qualname__, "value": _canonical(value.value)}
    if isinstance(value, dict):
        pairs = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        if all(isinstance(k, str) for k, _ in pairs) or all(isinstance(k, int) for k, _ in pairs):
            pairs.sort(key=lambda pair: pair[0])  # the order keys always had: results stay reusable
        else:  # mixed, float or container keys do not compare: order by their JSON text
            pairs.sort(key=_text)
        return {"__dict__": pairs}
    if isinstance(value, (list, tuple)):
        return {"__" + type(value).__name__ + "__": [_canonical(v) for v in value]}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"__float__": value.hex()}
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return _canonical(value.item())  # numpy scalars
    if isinstance(value, (set, frozenset)):
        return {"__" + type(value).__name__ + "__": [_canonical(v) for v in _sorted_canonically(value)]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": type(value).__module__ + "." + type(value).__qualname__,
                "fields": {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    buffer = io.BytesIO()
    try:
        _CanonicalPickler(buffer, protocol=4).dump(value)
    except ConfigurationError:
        raise
    except RecursionError:
        _refuse(value, "it contains itself", "Pass plain data without reference cycles")
    except Exception as error:  # noqa: BLE001 - plain pickle refuses lambdas, local functions and classes
        _refuse(value, "plain pickle refuses it (%s: %s)" % (type(error).__name__, error),
                "Define functions and classes at module level (not lambdas or inside a function), pass "
                "plain data (numbers, strings, tuples, lists, dicts, sets, enums, dataclasses), or pass the "
                "object as a shared input and put its name in the grid")
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    return {"__pickle__": type(value).__module__ + "." + type(value).__qualname__, "sha256": digest}


_WRITTEN = re.compile(  # every key a job's prefix holds, as this module builds them
    r"(job\.json|elements\.json|status\.html|progress\.json|lease\.json|function\.pkl"
    r"|shared/[A-Za-z0-9_.-]+-[0-9a-f]{%(n)d}\.pkl|inputs/[0-9a-f]{%(n)d}\.pkl"
    r"|results/[0-9a-f]{%(n)d}(\.[0-9a-f]{16})?\.pkl|code/[0-9a-f]{%(n)d}\.zip"
    r"|attempts/[0-9a-f]{%(n)d}/[0-9A-Za-z-]+\.json|logs/[0-9a-f]{%(n)d}/[0-9A-Za-z-]+\.log"
    r"|dispatches/[0-9A-Za-z-]+\.json|luigi/[0-9A-Za-z-]+\.json|quarantine/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)" % {"n": _KEY_LENGTH})


def is_job_key(key):
    """Whether luigi-kubeface writes keys like this one in a job's prefix (cleanup deletes only those)."""
    return bool(_WRITTEN.fullmatch(key)) and ".." not in key.split("/")


def is_element_key(text):
    """Exactly what element_key returns: 24 lowercase hex characters."""
    return isinstance(text, str) and bool(re.fullmatch("[0-9a-f]{%d}" % _KEY_LENGTH, text))


_KEY_TEXT = json.JSONEncoder(sort_keys=True)  # json.dumps(..., sort_keys=True), without a new encoder per key


def _scalar_text(value):
    """The JSON _KEY_TEXT writes for an exact str, int, bool or None (None for anything else)."""
    kind = type(value)
    if kind is str:
        return json.encoder.encode_basestring_ascii(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    return "null" if value is None else None


def _scalar_key_text(args, kwargs):
    """The key text of arguments that are all exact scalars, written directly (the common grid, built at a
    fraction of the cost); None otherwise. Byte for byte what the general encoding writes."""
    if not all(type(name) is str for name in kwargs):
        return None
    positional = [_scalar_text(value) for value in args]
    named = [(name, _scalar_text(value)) for name, value in sorted(kwargs.items())]
    if None in positional or any(text is None for _, text in named):
        return None
    pairs = ", ".join("[%s, %s]" % (json.encoder.encode_basestring_ascii(name), text) for name, text in named)
    return '[{"__list__": [%s]}, {"__dict__": [%s]}]' % (", ".join(positional), pairs)


def element_key(args, kwargs):
    """A stable digest of an element's arguments: the same element has the same key in every run."""
    text = _scalar_key_text(args, kwargs) or _KEY_TEXT.encode([_canonical(list(args)), _canonical(dict(kwargs))])
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_LENGTH]


def check_job_id(job_id):
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise ConfigurationError(
            "job id %r is not usable as a storage prefix: use 1-200 characters from "
            "letters, digits and _ . = - (starting with a letter or digit)" % (job_id,)
        )
    return job_id


def job_id_from_task_id(task_id):
    """Luigi task ids may hold any character; keep the readable part and its hash."""
    cleaned = re.sub(r"[^A-Za-z0-9_.=-]", "_", task_id).strip("_.=-")
    return check_job_id(cleaned[:200] or "job")


def job_url(storage_root, job_id):
    return storage_root.rstrip("/") + "/" + check_job_id(job_id)


def job_id_from_url(url):
    """The job id is the last part of a job's URL (see job_url)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def input_key(element):
    return INPUTS_PREFIX + element + ".pkl"


def result_key(element, version=""):
    """Where an element's result for one code version lives ("" : a result from before versions)."""
    return RESULTS_PREFIX + element + ("." + version if version else "") + ".pkl"


def result_from_key(key):
    """(element, code version) for a result name found in a listing, None for anything else."""
    if key.startswith(RESULTS_PREFIX) and key.endswith(".pkl"):
        name = key[len(RESULTS_PREFIX) : -len(".pkl")]
        if "/" not in name:
            element, _, version = name.partition(".")
            return element, version
    return None


def element_from_result_key(key):
    """The element of a result name found in a listing (None for anything else)."""
    found = result_from_key(key)
    return found[0] if found else None


def code_key(digest):
    return CODE_PREFIX + digest[:_KEY_LENGTH] + ".zip"


def shared_key(name, digest):
    return "shared/%s-%s.pkl" % (re.sub(r"[^A-Za-z0-9_.-]", "_", name), digest[:_KEY_LENGTH])


def shared_digest(key):
    """The content digest a shared input's key addresses (see shared_key): what its bytes must hash to."""
    return key[: -len(".pkl")].rsplit("-", 1)[-1]


def attempts_prefix(element):
    return ATTEMPTS_PREFIX + element + "/"


def attempt_record_key(element, attempt):
    return attempts_prefix(element) + attempt + ".json"


def log_key(element, attempt):
    return LOGS_PREFIX + "%s/%s.log" % (element, attempt)


def dispatch_key(run_id):
    return DISPATCHES_PREFIX + run_id + ".json"


def run_from_dispatch_key(key):
    """The run id of a dispatches/<run>.json key found in a listing, else None."""
    if key.startswith(DISPATCHES_PREFIX) and key.endswith(".json") and "/" not in key[len(DISPATCHES_PREFIX):]:
        return key[len(DISPATCHES_PREFIX):-len(".json")]
    return None


def luigi_flag_key(run_id):
    return LUIGI_PREFIX + run_id + ".json"


def quarantine_key(key):
    """Where a refused blob is moved: out of every listing the engine reads, never overwritten."""
    return "%s%s.%d-%s" % (QUARANTINE_PREFIX, key, int(time.time()), os.urandom(3).hex())


def new_attempt_id(number):
    """Attempt ids sort by attempt number (per element, across runs: next_attempt_number), then time;
    the suffix keeps concurrent masters apart.

    48 random bits: thousands of launches a second must not draw the same id twice.
    """
    return "%03d-%d-%s" % (number, int(time.time()), os.urandom(6).hex())


_ATTEMPT_ID = re.compile(r"[0-9]{3,9}-[0-9]{1,12}-(?:[0-9a-f]{6}|[0-9a-f]{12})")  # 6 hex: ids of earlier releases


def is_attempt_id(text):
    """Exactly what new_attempt_id returns: a name planted under attempts/ (markup, say) is no attempt."""
    return isinstance(text, str) and bool(_ATTEMPT_ID.fullmatch(text))


def attempt_number(attempt_id):
    return int(attempt_id.split("-", 1)[0])


def attempt_time(attempt_id):
    """When the attempt was launched (seconds since the epoch), from its id; 0 if the id has none."""
    parts = attempt_id.split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


def attempt_order(attempt_id):
    """Sort key of an element's attempts, oldest first: by number (not as text: 1000 follows 999), then time."""
    return attempt_number(attempt_id), attempt_time(attempt_id), attempt_id


def numbered_attempts(ids):
    """(number, id) of an element's attempts, oldest first: the number each id carries, except where ids
    share one (buckets of earlier releases restarted at 1 on every run), which count on from the one before."""
    numbered, last = [], 0
    for attempt in sorted(ids, key=attempt_order):
        last = max(attempt_number(attempt), last + 1)
        numbered.append((last, attempt))
    return numbered


def next_attempt_number(ids):
    """The number of an element's next attempt: after the highest of those it has (numbered_attempts)."""
    numbered = numbered_attempts(ids)
    return numbered[-1][0] + 1 if numbered else 1


def attempt_from_record_key(key):
    """(element, attempt) for an attempts/<element>/<attempt>.json key found in a listing, else None."""
    parts = key.split("/")
    if (len(parts) == 3 and key.startswith(ATTEMPTS_PREFIX) and parts[2].endswith(".json")
            and is_element_key(parts[1]) and is_attempt_id(parts[2][: -len(".json")])):
        return parts[1], parts[2][: -len(".json")]
    return None


def new_run_id():
    return "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), os.urandom(4).hex())
