"""A job: a function, its elements and its shared inputs, living under one storage prefix.

This module turns user input into validated elements, uploads what the runner needs, and answers
questions about the job from storage (what is done, what each attempt did).
"""

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import cloudpickle

from . import naming, serialization
from .errors import BlobNotFoundError, ConfigurationError, CorruptBlobError, SigningKeyError, UnreadableRecordError
from .keys import KeyRing
from .storage import open_storage

_LABEL_LIMIT = 200
MAX_INPUT_BYTES = 64 * 1024 * 1024  # larger arguments belong in shared inputs, uploaded once


@dataclass(frozen=True)
class Element:
    index: int  # position in the grid as given this run (results are returned in this order)
    key: str  # stable digest of the arguments: the identity across runs
    label: str  # the arguments, readable
    payload: bytes = field(repr=False)  # pickled (args, kwargs)
    names: frozenset = frozenset()  # keyword argument names


def _label(args, kwargs):
    parts = [repr(a) for a in args] + ["%s=%r" % kv for kv in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= _LABEL_LIMIT else text[: _LABEL_LIMIT - 3] + "..."


def _element(index, args, kwargs, where):
    try:
        payload = cloudpickle.dumps((args, kwargs))
    except Exception as error:  # noqa: BLE001 - any pickling failure is the user's value
        raise ConfigurationError(
            "%s (%s) cannot be pickled: %s: %s. Grid values must be picklable data; build "
            "unpicklable objects (clients, open files, locks) inside the element function"
            % (where, _label(args, kwargs), type(error).__name__, error)
        ) from None
    if len(payload) > MAX_INPUT_BYTES:
        raise ConfigurationError(
            "%s pickles to %d MB, over the %d MB limit for one element's arguments: pass large data "
            "once as a shared input (shared_inputs() on a map task, shared= on Client.map)"
            % (where, len(payload) >> 20, MAX_INPUT_BYTES >> 20)
        )
    try:
        key = naming.element_key(args, kwargs)
    except ConfigurationError as error:
        raise ConfigurationError("%s (%s): %s" % (where, _label(args, kwargs), error)) from None
    return Element(index, key, _label(args, kwargs), payload, frozenset(kwargs))


def _check_unique(elements, what):
    first = {}
    for element in elements:
        if element.key in first:
            raise ConfigurationError(
                "%s %d and %d are identical (%s): every element must differ, remove the duplicate"
                % (what, first[element.key], element.index, element.label)
            )
        first[element.key] = element.index
    if not elements:
        raise ConfigurationError("the %s is empty: a job needs at least one element" % what.split()[0])
    return elements


def elements_from_grid(grid):
    """A grid is a list of mappings of keyword arguments, one per element."""
    if isinstance(grid, (str, bytes, Mapping)) or not hasattr(grid, "__iter__"):
        raise ConfigurationError(
            "grid() returned a %s: it must return a list of dicts of keyword arguments, one per element"
            % type(grid).__name__
        )
    elements = []
    for index, params in enumerate(grid):
        if not isinstance(params, Mapping):
            raise ConfigurationError(
                "grid element %d is a %s (%r): every grid element must be a dict of keyword arguments"
                % (index, type(params).__name__, params)
            )
        bad = [k for k in params if not isinstance(k, str) or not k.isidentifier()]
        if bad:
            raise ConfigurationError(
                "grid element %d has keys %r that are not valid argument names: use identifiers" % (index, bad)
            )
        if "self" in params:
            raise ConfigurationError(
                "grid element %d has a key named 'self', which collides with the method's own argument when "
                "run_element(self, ...) is called: rename that parameter" % index
            )
        elements.append(_element(index, (), dict(params), "grid element %d" % index))
    return _check_unique(elements, "grid elements")


def elements_from_items(items):
    """For Client.map: each item is the single positional argument of one call."""
    return _check_unique([_element(i, (item,), {}, "item %d" % i) for i, item in enumerate(items)], "items")


class Job:
    def __init__(self, job_id, storage_root, function=None, elements=(), shared=None, retry_deadline=600.0,
                 keys=None):
        self.id = naming.check_job_id(job_id)
        self.storage_root = storage_root
        self.url = naming.job_url(storage_root, job_id)
        self.storage = open_storage(self.url, retry_deadline=retry_deadline)
        self.function = function
        self.elements = list(elements)
        self.shared = dict(shared or {})
        self._shared_keys = {}
        self.keys = keys or KeyRing()
        self._key = None

    def signing_key(self):
        """The job's key (from the master's key file); SigningKeyError with the fix if it is not here."""
        if self._key is None:
            self._key = self.keys.load(self.url)
        return self._key

    def _create_key(self):
        """Before the first launch: reuse the job's key, or make one if no result needs the old one."""
        try:
            return self.signing_key()
        except SigningKeyError:
            if self.keys.signing_key_file or self.finished():
                raise
        self._key = self.keys.create(self.url)
        return self._key

    def secret_env(self):
        """What each attempt needs privately (backends hand it over as env, never in argv or specs)."""
        return {serialization.KEY_ENV: self.signing_key().hex()}

    def prepare(self, details=None):
        """Everything that can fail before launch fails here: storage, function, shared inputs.

        details (where the job runs: backend, image, namespace) go into job.json for `kubeface`.
        """
        clash = sorted(set(self.shared).intersection(set().union(*(e.names for e in self.elements))))
        if clash:
            raise ConfigurationError(
                "shared input name(s) %s are also grid parameters: rename one of them" % ", ".join(clash)
            )
        open_storage(self.storage_root).check_writable()
        signing = self._create_key()
        try:
            function_blob = serialization.dumps(self.function, "function", {"job": self.id}, signing)
        except Exception as error:  # noqa: BLE001
            raise ConfigurationError(
                "the element function %r cannot be pickled: %s: %s. Keep unpicklable state (clients, "
                "locks, open files) out of the task's attributes, or create it inside the function"
                % (getattr(self.function, "__qualname__", self.function), type(error).__name__, error)
            ) from None
        for name, value in self.shared.items():
            try:
                blob = serialization.dumps(value, "shared", {"name": name, "job": self.id}, signing)
            except Exception as error:  # noqa: BLE001
                raise ConfigurationError(
                    "shared input %r cannot be pickled: %s: %s" % (name, type(error).__name__, error)
                ) from None
            key = naming.shared_key(name, hashlib.sha256(blob).hexdigest())
            self.storage.write_if_absent(key, blob)  # content-addressed: upload once, ever
            self._shared_keys[name] = key
        meta = dict(serialization.versions(), job=self.id, elements=len(self.elements),
                    function=getattr(self.function, "__qualname__", repr(self.function)),
                    shared=self._shared_keys, updated=time.time(), **(details or {}))
        self.storage.write(naming.JOB_META, json.dumps(meta, indent=1).encode())
        index = {"keys": [e.key for e in self.elements], "labels": [e.label for e in self.elements]}
        self.storage.write(naming.ELEMENTS, json.dumps(index, separators=(",", ":")).encode())
        self.storage.write(naming.FUNCTION, function_blob)

    def write_input(self, element):
        blob = serialization.envelope(element.payload, "input",
                                      {"element": element.key, "job": self.id, "shared": self._shared_keys},
                                      self.signing_key())
        self.storage.write(naming.input_key(element.key), blob)

    def finished(self):
        """Elements with a result, from one listing of the results prefix."""
        return {k for k in map(naming.element_from_result_key, self.storage.list(naming.RESULTS_PREFIX)) if k}

    def has_result(self, key):
        return self.storage.exists(naming.result_key(key))

    def check_result(self, key):
        """Read a result and verify signature, place and digest without unpickling: (header, payload).

        BlobNotFoundError if there is none. A refused result is moved aside (naming.quarantine_key)
        so that the next run recomputes it, and CorruptBlobError (or UntrustedBlobError) says so.
        """
        blob = self.storage.read(naming.result_key(key))
        where = "the result of element %s (%s/%s)" % (key, self.url, naming.result_key(key))
        try:
            return serialization.read_header(blob, where, self.signing_key(),
                                             {"kind": "result", "job": self.id, "element": key}, fix="")
        except CorruptBlobError as error:
            aside = naming.quarantine_key(naming.result_key(key))
            self.storage.write(aside, blob)
            self.storage.delete(naming.result_key(key))
            raise type(error)("%s; it was moved aside to %s/%s: rerun the job to recompute it"
                              % (str(error).rstrip("; "), self.url, aside)) from None

    def load_result(self, key):
        header, payload = self.check_result(key)
        serialization.check_versions(header, "the result of element %s" % key)
        return cloudpickle.loads(payload)

    def sweep_results(self, keys):
        """Check results after one was refused, so one rerun recomputes every damaged one: refused keys."""
        refused = []
        for key in keys:
            try:
                self.check_result(key)
            except BlobNotFoundError:
                pass
            except CorruptBlobError:
                refused.append(key)
        return refused

    def read_record(self, key):
        """A JSON record of the job: None if absent, UnreadableRecordError (naming it) if it does not parse."""
        try:
            data = self.storage.read(key)
        except BlobNotFoundError:
            return None
        try:
            record = json.loads(data)
        except ValueError as error:
            raise UnreadableRecordError(
                "%s/%s is not valid JSON (%s): it was cut short or altered. It is skipped; delete it if it "
                "stays (a rerun writes job.json and elements.json again)" % (self.url, key, error)) from None
        if not isinstance(record, dict):
            raise UnreadableRecordError("%s/%s holds a JSON %s, not a record: it was altered; delete it"
                                        % (self.url, key, type(record).__name__))
        return record

    def attempt_record(self, key, attempt):
        return self.read_record(naming.attempt_record_key(key, attempt))

    def write_attempt_record(self, key, attempt, record):
        self.storage.write(naming.attempt_record_key(key, attempt), json.dumps(record, indent=1).encode())

    def attempts(self, key):
        """Attempt ids of an element, oldest first."""
        names = self.storage.list(naming.attempts_prefix(key))
        return sorted(n.rsplit("/", 1)[1][: -len(".json")] for n in names if n.endswith(".json"))

    def write_dispatch(self, run_id, summary):
        self.storage.write(naming.dispatch_key(run_id), json.dumps(summary, indent=1).encode())

    def read_dispatch(self, run_id):
        return self.read_record(naming.dispatch_key(run_id))

