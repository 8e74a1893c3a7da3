"""A job: a function, its elements and its shared inputs, living under one storage prefix.

This module turns user input into validated elements, uploads what the runner needs, and answers
questions about the job from storage (what is done, what each attempt did).
"""

import copy
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import cloudpickle

from . import code_package, naming, serialization
from .errors import (
    BlobNotFoundError, ConfigurationError, CorruptBlobError, SigningKeyError, StorageError, UnreadableRecordError,
)
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
    params: dict = field(default=None, repr=False, compare=False)  # the arguments, JSON-safe (plain_params)


def _plain(value):
    """A parameter value as JSON holds it: numbers, text, bools and None as they are, anything else its repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, str) or len(value) <= _LABEL_LIMIT else value[: _LABEL_LIMIT - 3] + "..."
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    text = repr(value)
    return text if len(text) <= _LABEL_LIMIT else text[: _LABEL_LIMIT - 3] + "..."


def plain_params(args, kwargs, item_name="item"):
    """An element's parameters by name, JSON-safe, for results tables and charts (elements.json keeps them).

    A Client.map item is named item_name (its function's argument), or spread when it is a dict of names.
    """
    if args and len(args) == 1 and not kwargs:
        item = args[0]
        if isinstance(item, Mapping) and item and all(isinstance(k, str) for k in item):
            return {k: _plain(v) for k, v in item.items()}
        return {item_name: _plain(item)}
    params = {"arg%d" % i: _plain(a) for i, a in enumerate(args)}
    params.update((k, _plain(v)) for k, v in kwargs.items())
    return params


def _label(args, kwargs):
    parts = [repr(a) for a in args] + ["%s=%r" % kv for kv in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= _LABEL_LIMIT else text[: _LABEL_LIMIT - 3] + "..."


def _element(index, args, kwargs, where, item_name="item"):
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
    return Element(index, key, _label(args, kwargs), payload, frozenset(kwargs), plain_params(args, kwargs, item_name))


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


def pickle_shared(shared):
    """Each shared input pickled once for streaming: {name: serialization.Pickled}. Its pickle stream
    waits in a temporary file and its large buffers stay in the value itself: no second copy in memory."""
    pickles = {}
    for name, value in shared.items():
        try:
            pickles[name] = serialization.Pickled(value)
        except Exception as error:  # noqa: BLE001
            for done in pickles.values():
                done.close()
            raise ConfigurationError(
                "shared input %r cannot be pickled: %s: %s" % (name, type(error).__name__, error)
            ) from None
    return pickles


def elements_from_items(items, item_name="item"):
    """For Client.map: each item is the single positional argument of one call (named item_name in tables)."""
    return _check_unique([_element(i, (item,), {}, "item %d" % i, item_name) for i, item in enumerate(items)],
                         "items")


class Job:
    """settings gives what shapes the shipped code and reuse (code_include, code_exclude,
    code_max_bytes, reuse_results); pinned_version replaces the computed code version."""

    def __init__(self, job_id, storage_root, function=None, elements=(), shared=None, retry_deadline=600.0,
                 keys=None, settings=None, pinned_version=None):
        self.id = naming.check_job_id(job_id)
        self.storage_root = storage_root
        self.url = naming.job_url(storage_root, job_id)
        self.retry_deadline = retry_deadline
        self.storage = open_storage(self.url, retry_deadline=retry_deadline)
        self.function = function
        self.elements = list(elements)
        self.shared = dict(shared or {})
        self._shared_keys = {}
        self._shared_pickles = None
        self.keys = keys or KeyRing()
        self._key = None
        self.settings = settings
        self.pinned_version = pinned_version
        self._function_payload = None
        self._code = None
        self._code_version = None
        self._reuse_any = None if function is None else getattr(settings, "reuse_results", "same_code") == "any"
        self._versions = None  # element -> code versions of its results, as last listed

    def renamed(self, job_id):
        """The same job under another id, keeping what was computed (Client.map names a job by its code)."""
        other = copy.copy(self)
        other.id = naming.check_job_id(job_id)
        other.url = naming.job_url(self.storage_root, job_id)
        other.storage = open_storage(other.url, retry_deadline=self.retry_deadline)
        other._key, other._versions = None, None
        return other

    # -- the code: what ships, and the version results are filed under ----------------------

    def function_payload(self):
        if self._function_payload is None:
            try:
                self._function_payload = cloudpickle.dumps(self.function)
            except Exception as error:  # noqa: BLE001
                raise ConfigurationError(
                    "the element function %r cannot be pickled: %s: %s. Keep unpicklable state (clients, "
                    "locks, open files) out of the task's attributes, or create it inside the function"
                    % (getattr(self.function, "__qualname__", self.function), type(error).__name__, error)
                ) from None
        return self._function_payload

    def shared_pickles(self):
        if self._shared_pickles is None:
            self._shared_pickles = pickle_shared(self.shared)
        return self._shared_pickles

    def _build_code(self, payloads, pickles=()):
        roots = code_package.referenced_modules(b"".join(payloads))
        for pickled in pickles:  # module names are short: chunks overlapping by 300 bytes miss none
            for chunk in pickled.stream_chunks(overlap=300):
                roots += [name for name in code_package.referenced_modules(bytes(chunk)) if name not in roots]
        module = getattr(self.function, "__module__", None)
        if module in sys.modules and module != "__main__":
            roots.append(module)
        include = getattr(self.settings, "code_include_list", ())
        exclude = getattr(self.settings, "code_exclude_list", ())
        max_bytes = getattr(self.settings, "code_max_bytes", 64 << 20)
        return code_package.build(roots, include, exclude, max_bytes)

    def code(self):
        """The user's modules the function and the element inputs need (CodePackage), built once."""
        if self._code is None:
            self._code = self._build_code([self.function_payload()] + [e.payload for e in self.elements])
        return self._code

    @property
    def code_version(self):
        """This job's code version: computed from its function, else (a job opened to be read) the
        version its last master recorded in job.json."""
        if self._code_version is None:
            if self.function is not None:
                self._code_version = code_package.code_version(self.function, self.code(), self.pinned_version)
            else:
                self._code_version = self.meta().get("code_version", "")
        return self._code_version

    @property
    def reuse_any(self):
        """Luigi's semantics ("the output exists") instead of results of this code only."""
        if self._reuse_any is None:  # a job read from storage: as its master recorded it; any result if unknown
            meta = self.meta()
            self._reuse_any = meta.get("reuse_results") == "any" or "code_version" not in meta
        return self._reuse_any

    def meta(self):
        """job.json as the last master wrote it ({} if there is none or it cannot be read)."""
        try:
            meta = json.loads(self.storage.read(naming.JOB_META))
        except (BlobNotFoundError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

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
        """What each attempt needs privately (backends hand it over by a pipe or a Secret, never in argv or specs)."""
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
        version = self.code_version  # of the function and the inputs' code: known before shared inputs are
        shared = self.shared_pickles()
        # What ships also covers classes only shared inputs use (they do not change the version).
        package = self._build_code([self.function_payload()] + [e.payload for e in self.elements],
                                   list(shared.values())) if shared else self.code()
        code_key = naming.code_key(package.digest)
        self.storage.write(code_key, serialization.envelope(
            package.archive(), "code", {"job": self.id, "digest": package.digest, "modules": list(package.modules),
                                        "requirements": package.requirements}, signing))
        function_blob = serialization.envelope(self.function_payload(), "function",
                                               {"job": self.id, "code": code_key, "code_version": version}, signing)
        for name, pickled in shared.items():
            extra = {"name": name, "job": self.id}
            key = naming.shared_key(name, serialization.header_digest(pickled.header("shared", extra, signing)))
            if not self.storage.exists(key):  # content-addressed: upload once, ever, streamed
                blob = pickled.blob("shared", extra, signing)
                self.storage.write_stream_if_absent(key, blob, blob.size)
            self._shared_keys[name] = key
        code = {"digest": package.digest, "modules": list(package.modules), "bytes": package.size,
                "requirements": package.requirements, "pinned": self.pinned_version}
        meta = dict(serialization.versions(), job=self.id, elements=len(self.elements),
                    function=getattr(self.function, "__qualname__", repr(self.function)),
                    code_version=version, code=code,
                    reuse_results="any" if self.reuse_any else "same_code",
                    result_metric=getattr(self.settings, "result_metric", ""),
                    result_direction=getattr(self.settings, "result_direction", "maximize"),
                    shared=self._shared_keys, updated=time.time(), **(details or {}))
        self.storage.write(naming.JOB_META, json.dumps(meta, indent=1).encode())
        # Parameters as JSON values too: results tables and charts read them with the labels, in one read.
        index = {"keys": [e.key for e in self.elements], "labels": [e.label for e in self.elements],
                 "params": [e.params or {} for e in self.elements]}
        self.storage.write(naming.ELEMENTS, json.dumps(index, separators=(",", ":")).encode())
        self.storage.write(naming.FUNCTION, function_blob)

    def write_input(self, element):
        blob = serialization.envelope(element.payload, "input",
                                      {"element": element.key, "job": self.id, "shared": self._shared_keys},
                                      self.signing_key())
        self.storage.write(naming.input_key(element.key), blob)

    def result_versions(self):
        """element -> code versions of its results, from one listing ("": written before versions)."""
        versions = {}
        for name in self.storage.list(naming.RESULTS_PREFIX):
            found = naming.result_from_key(name)
            if found:
                versions.setdefault(found[0], set()).add(found[1])
        self._versions = versions
        return versions

    def finished(self, versions=None):
        """Elements with a result of this code (of any code with reuse_results = any), from one listing
        (or from versions, a result_versions() just taken)."""
        versions = self.result_versions() if versions is None else versions
        if self.reuse_any:
            return set(versions)
        current = self.code_version
        return {k for k, found in versions.items() if current in found}

    def result_version(self, key):
        """Which of an element's results counts: this code's, or with reuse any, one that exists."""
        current = self.code_version
        if not self.reuse_any:
            return current
        found = (self._versions or {}).get(key)
        if not found:
            found = {v for k, v in filter(None, map(naming.result_from_key,
                                                    self.storage.list(naming.result_key(key, "")[:-len(".pkl")])))
                     if k == key}
        return current if current in found or not found else max(found)

    def drop_other_versions(self, key):
        """Delete an element's results of other code once this code's result is in (storage stays bounded)."""
        for version in (self._versions or {}).get(key, ()):
            if version != self.code_version:
                self.storage.delete(naming.result_key(key, version))

    def has_result(self, key):
        return self.storage.exists(naming.result_key(key, self.result_version(key)))

    def _result_place(self, key):
        """(blob key, description, the header fields it must carry) of the result that counts."""
        version = self.result_version(key)
        name = naming.result_key(key, version)
        expect = {"kind": "result", "job": self.id, "element": key}
        if version:  # a result filed under a code version must say so in its signed header
            expect["code_version"] = version
        return name, "the result of element %s (%s/%s)" % (key, self.url, name), expect

    def _refuse(self, name, error):
        """Move a refused result aside (renamed, never rewritten from bytes read) so the next run recomputes it."""
        try:
            head = self.storage.head(name, serialization.HEAD_LIMIT).data
        except StorageError:  # gone, or a link (never followed): no note
            head = None
        aside = naming.quarantine_key(name)
        self.storage.move(name, aside)
        return type(error)("%s%s; it was moved aside to %s/%s: rerun the job to recompute it"
                           % (str(error).rstrip("; "), self._team_key_note(head), self.url, aside))

    def check_result(self, key):
        """Check a result from its first megabyte without unpickling it: its signed header.

        The signature, place and size are verified, and on GCS the payload against the crc32c GCS
        computed itself; the payload's sha256 is checked by load_result, before it unpickles.
        BlobNotFoundError if there is none. A refused result is moved aside (naming.quarantine_key)
        so that the next run recomputes it, and CorruptBlobError (or UntrustedBlobError) says so.
        """
        name, where, expect = self._result_place(key)
        try:
            head = self.storage.head(name, serialization.HEAD_LIMIT)
            return serialization.read_head(head.data, head.size, where, self.signing_key(), expect, fix="",
                                           storage_crc32c=head.crc32c)[0]
        except CorruptBlobError as error:
            raise self._refuse(name, error) from None

    def _team_key_note(self, head):
        """Say so when a refused blob is signed with the team key itself, as before keys were bound to job URLs."""
        if head is None or not self.keys.signing_key_file:
            return ""
        try:
            serialization.read_header(head, "", self.keys.stored_key(self.url), check_payload=False)
        except (CorruptBlobError, SigningKeyError):
            return ""
        return (" (it is signed with the team key itself, as luigi-kubeface did before each job's key was "
                "derived from the team key and the job's URL: such results could be replayed from another "
                "storage root, so they are refused and recomputed)")

    def load_result(self, key):
        """Stream the result in (GCS: through a temporary file), check it whole, then unpickle it once."""
        name, where, expect = self._result_place(key)
        try:
            with self.storage.open_read(name) as f:
                return serialization.load_stream(f, where, self.signing_key(), expect, fix="")[1]
        except CorruptBlobError as error:
            raise self._refuse(name, error) from None

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

    def write_attempt_record(self, key, attempt, record, if_absent=False):
        """if_absent: the master's own account (cancelled, lost) never replaces what the runner wrote."""
        data = json.dumps(record, indent=1).encode()
        if if_absent:
            return self.storage.write_if_absent(naming.attempt_record_key(key, attempt), data)
        self.storage.write(naming.attempt_record_key(key, attempt), data)
        return True

    def attempts(self, key):
        """Attempt ids of an element, oldest first."""
        names = self.storage.list(naming.attempts_prefix(key))
        return sorted(n.rsplit("/", 1)[1][: -len(".json")] for n in names if n.endswith(".json"))

    def write_dispatch(self, run_id, summary):
        self.storage.write(naming.dispatch_key(run_id), json.dumps(summary, indent=1).encode())

    def read_dispatch(self, run_id):
        return self.read_record(naming.dispatch_key(run_id))

