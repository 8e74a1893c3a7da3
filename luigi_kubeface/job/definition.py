"""A job: a function, its elements and its shared inputs, living under one storage prefix.

This module turns user input into validated elements and defines the job; job_store.py reads and
writes what its prefix holds.
"""

import copy
import pickle
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import cloudpickle

from . import identity
from .code import discover as code_discover, version as code_versions
from ..bucket import layout as naming, blobs as serialization
from ..errors import ConfigurationError
from ..bucket.job_store import JobStore
from ..bucket.result_store import Counting
from ..bucket.signing import KeyRing
from ..storage import open_storage

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


_PLAIN_TYPES = frozenset([str, int, float, bool, type(None), bytes])


def _plain_data(value, depth=0):
    """Only builtin scalars in builtin lists, tuples and dicts: pickle writes them as cloudpickle does."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return True
    if depth > 20:
        return False
    if kind is dict:
        return all(_plain_data(k, depth + 1) and _plain_data(v, depth + 1) for k, v in value.items())
    return (kind is list or kind is tuple) and all(_plain_data(v, depth + 1) for v in value)


def _pickled(args, kwargs, scalars=False):
    """The element's payload; plain data through pickle itself (the same bytes, without cloudpickle's
    per-call set-up, which dominated building a large grid). scalars: all arguments are known exact scalars."""
    if scalars or (_plain_data(args) and _plain_data(kwargs)):
        return pickle.dumps((args, kwargs), protocol=cloudpickle.DEFAULT_PROTOCOL)
    return cloudpickle.dumps((args, kwargs))


def _element(index, args, kwargs, where, item_name="item"):
    key = identity.scalar_element_key(args, kwargs)  # the common grid: its key, and its arguments known plain
    try:
        payload = _pickled(args, kwargs, scalars=key is not None)
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
        key = key or identity.element_key(args, kwargs)
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
    return elements  # none is fine: a map over nothing has no results


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
    return _check_unique([_element(i, (item,), {}, "item %d" % i, item_name) for i, item in enumerate(items)], "items")


class Job:
    """A job's definition: its function, elements, shared inputs, code and settings. What its
    storage prefix holds is read and written by its store (job.store, a JobStore).

    settings gives what shapes the shipped code and reuse (code_include, code_exclude,
    code_max_bytes, reuse_results); pinned_version replaces the computed code version.
    """

    def __init__(
        self,
        job_id,
        storage_root,
        function=None,
        elements=(),
        shared=None,
        retry_deadline=600.0,
        keys=None,
        settings=None,
        pinned_version=None,
    ):
        self.storage_root = storage_root
        self.retry_deadline = retry_deadline
        self.function = function
        self.elements = list(elements)
        self.shared = dict(shared or {})
        self._shared_keys = {}
        self._shared_pickles = None
        self.settings = settings
        self.pinned_version = pinned_version
        self._function_payload = None
        self._code = None
        self._code_version = None
        self.id = naming.check_job_id(job_id)
        self.url = naming.job_url(storage_root, self.id)
        self.keys = keys or KeyRing()
        self._store = None

    @property
    def store(self):
        """The job's JobStore, opened when first used: results of this function's code count (passed as a
        value, computed then), and a job with no function reads what its job.json counts."""
        if self._store is None:
            counting = None
            if self.function is not None:
                reuse_any = getattr(self.settings, "reuse_results", "same_code") == "any"
                counting = Counting(self.code_version, self.legacy_code_version or "", reuse_any)
            self._store = JobStore(self.url, keys=self.keys, retry_deadline=self.retry_deadline, counting=counting)
        return self._store

    def renamed(self, job_id):
        """The same job under another id, keeping what was computed (Client.map names a job by its code)."""
        other = copy.copy(self)
        other.id = naming.check_job_id(job_id)
        other.url = naming.job_url(self.storage_root, other.id)
        other._store = None
        return other

    @property
    def storage(self):
        return self.store.storage

    @property
    def shared_keys(self):
        """Shared input name -> its key in storage, known once prepare() uploaded them."""
        return dict(self._shared_keys)

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

    def _close_shared_pickles(self):
        for pickled in (self._shared_pickles or {}).values():
            pickled.close()
        self._shared_pickles = None

    def _build_code(self, payloads, pickles=()):
        roots = code_discover.referenced_modules(b"".join(payloads))
        for pickled in pickles:  # module names are short: chunks overlapping by 300 bytes miss none
            for chunk in pickled.stream_chunks(overlap=300):
                roots += [name for name in code_discover.referenced_modules(bytes(chunk)) if name not in roots]
        module = getattr(self.function, "__module__", None)
        if module in sys.modules and module != "__main__":
            roots.append(module)
        include = getattr(self.settings, "code_include_list", ())
        exclude = getattr(self.settings, "code_exclude_list", ())
        max_bytes = getattr(self.settings, "code_max_bytes", 64 << 20)
        secrets = [getattr(self.settings, "signing_key_file", ""), getattr(self.settings, "key_dir", "")]
        return code_discover.build(roots, include, exclude, max_bytes, secrets)

    def code(self):
        """The user's modules the function and the element inputs need (CodePackage), built once."""
        if self._code is None:
            self._code = self._build_code([self.function_payload()] + [e.payload for e in self.elements])
        return self._code

    @property
    def code_version(self):
        """This job's code version: computed from its function, else (a job with no function) the
        version its last master recorded in job.json."""
        if self.function is None:
            return self.store.code_version
        if self._code_version is None:
            inputs = code_discover.referenced_modules(b"".join(e.payload for e in self.elements))
            self._code_version = code_versions.code_version(
                self.function,
                self.code(),
                self.pinned_version,
                inputs,
                getattr(self.settings, "code_include_list", ()),
                getattr(self.settings, "code_exclude_list", ()),
            )
        return self._code_version

    @property
    def legacy_code_version(self):
        """The same code's version as releases before the reach analysis tagged it (their results count)."""
        if self.function is None:
            counted = self.store.counted_versions
            return counted[1] if len(counted) > 1 else None
        if self.pinned_version is not None:
            return None  # a pinned version was tagged the same way then
        return code_versions.legacy_code_version(self.function, self.code())

    @property
    def reuse_any(self):
        """Luigi's semantics ("the output exists") instead of results of this code only."""
        return self.store.reuse_any

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
        store = self.store
        store.check_layout()
        store.create_key()
        version = self.code_version  # of the function and the inputs' code: known before shared inputs are
        shared = self.shared_pickles()
        try:
            # What ships also covers classes only shared inputs use (they do not change the version).
            package = (
                self._build_code([self.function_payload()] + [e.payload for e in self.elements], list(shared.values()))
                if shared
                else self.code()
            )
            code_key = store.write_code(package)
            for name, pickled in shared.items():
                self._shared_keys[name] = store.write_shared(name, pickled)
        finally:  # uploaded (or failed): their temporary files are closed, not left to the garbage collector
            self._close_shared_pickles()
        code = {
            "digest": package.digest,
            "modules": list(package.modules),
            "bytes": package.size,
            "requirements": package.requirements,
            "pinned": self.pinned_version,
        }
        store.write_meta(
            dict(
                serialization.versions(),
                job=self.id,
                elements=len(self.elements),
                function=getattr(self.function, "__qualname__", repr(self.function)),
                code_version=version,
                legacy_code_version=self.legacy_code_version,
                code=code,
                reuse_results="any" if self.reuse_any else "same_code",
                result_metric=getattr(self.settings, "result_metric", ""),
                result_direction=getattr(self.settings, "result_direction", "maximize"),
                shared=self._shared_keys,
                updated=time.time(),
                **(details or {}),
            )
        )
        store.write_elements(self.elements)
        store.write_function(self.function_payload(), code_key, version, package.digest)
