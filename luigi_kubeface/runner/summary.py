"""A result's summary for its attempt record: its numbers, small enough to read 50,000 of them.

The runner adds these fields to a successful attempt's record, so the results table, the status
page and records() compare elements from the records they read anyway, never from the results:

    summary      {name: number or bool}: a number or bool is {"value": x}; a mapping its numeric
                 entries; a sequence {"value[0]": ..., ...}. Absent when the result is not one of
                 those, has more than MAX_VALUES numbers or the summary would exceed MAX_BYTES.
    result_type  the result's type name, always
    result_size  its len(), when it has one

Pure and dependency-free (the runner imports it): numpy scalars and small 1-d arrays are
recognised by what they do (item(), tolist(), ndim), never by importing numpy. NaN and infinities
are recorded as null, since JSON has no spelling for them.
"""

import json
import math
import numbers
from collections.abc import Mapping

MAX_VALUES = 32
MAX_BYTES = 1024


def _number(value):
    """value as a JSON scalar (bool, int, float or None for NaN and infinities), or raise TypeError."""
    if not isinstance(value, (bool, numbers.Number)) and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # a numpy scalar or 0-d array
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    raise TypeError(type(value).__name__)


def _numbers(value):
    """{name: scalar} of a result, or None when it has no numeric summary of at most MAX_VALUES entries."""
    try:
        return {"value": _number(value)}
    except TypeError:
        pass
    if isinstance(value, Mapping):
        found = {}
        for name, item in value.items():
            try:
                found[str(name)] = _number(item)
            except TypeError:
                continue  # text and nested values stay in the result (e.g. a model's name)
            if len(found) > MAX_VALUES:
                return None
        return found or None
    if isinstance(value, (str, bytes, bytearray)):
        return None
    if getattr(value, "ndim", 1) != 1 or not hasattr(value, "__len__"):
        return None  # a matrix, a generator, an object
    if len(value) == 0 or len(value) > MAX_VALUES:
        return None
    items = value.tolist() if hasattr(value, "tolist") else value  # a small 1-d numpy array
    try:
        return {"value[%d]" % i: _number(item) for i, item in enumerate(items)}
    except TypeError:
        return None


def describe(value):
    """The record fields that summarise a result: summary (if it has one), result_type, result_size.

    Never raises: a result that cannot be summarised (its len() fails...) is recorded by type only.
    """
    kind = type(value)
    fields = {
        "result_type": kind.__qualname__
        if kind.__module__ == "builtins"
        else "%s.%s" % (kind.__module__, kind.__qualname__)
    }
    try:
        if (
            hasattr(value, "__len__")
            and not isinstance(value, (bool, numbers.Number))
            and getattr(value, "ndim", 1) != 0
        ):
            fields["result_size"] = len(value)
        summary = _numbers(value)
        if summary is not None and len(json.dumps(summary, separators=(",", ":"))) <= MAX_BYTES:
            fields["summary"] = summary
    except Exception:  # noqa: BLE001 - a summary is a courtesy: the result is written all the same
        pass
    return fields
