"""An element's identity: its key, a stable digest of its arguments, the same in every run and process.

The key names the element everywhere in the bucket (bucket/layout.py builds the keys that embed it).
"""

import dataclasses
import enum
import hashlib
import io
import json
import pickle

from ..bucket import layout
from ..errors import ConfigurationError


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
            for member in members[start : start + 1000]:
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
    raise ConfigurationError(
        "a value of type %s.%s cannot be encoded into a stable element key: %s. %s"
        % (type(value).__module__, type(value).__qualname__, why, fix)
    )


def _canonical(value):
    """Map a parameter value to JSON whose text does not depend on dict or set order, or on the process.

    ConfigurationError for a value with no such encoding (its key would differ between runs).
    """
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
        return {
            "__dataclass__": type(value).__module__ + "." + type(value).__qualname__,
            "fields": {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    buffer = io.BytesIO()
    try:
        _CanonicalPickler(buffer, protocol=4).dump(value)
    except ConfigurationError:
        raise
    except RecursionError:
        _refuse(value, "it contains itself", "Pass plain data without reference cycles")
    except Exception as error:  # noqa: BLE001 - plain pickle refuses lambdas, local functions and classes
        _refuse(
            value,
            "plain pickle refuses it (%s: %s)" % (type(error).__name__, error),
            "Define functions and classes at module level (not lambdas or inside a function), pass "
            "plain data (numbers, strings, tuples, lists, dicts, sets, enums, dataclasses), or pass the "
            "object as a shared input and put its name in the grid",
        )
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    return {"__pickle__": type(value).__module__ + "." + type(value).__qualname__, "sha256": digest}


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


def scalar_element_key(args, kwargs):
    """element_key of arguments that are all exact scalars, None otherwise (the caller then knows they are plain)."""
    text = _scalar_key_text(args, kwargs)
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()[: layout.KEY_LENGTH]


def element_key(args, kwargs):
    """A stable digest of an element's arguments: the same element has the same key in every run."""
    text = _scalar_key_text(args, kwargs) or _KEY_TEXT.encode([_canonical(list(args)), _canonical(dict(kwargs))])
    return hashlib.sha256(text.encode()).hexdigest()[: layout.KEY_LENGTH]
