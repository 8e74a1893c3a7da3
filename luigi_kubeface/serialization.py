"""Blobs carry a small JSON header (versions, digest) in front of the cloudpickle payload.

The header is read before anything is unpickled, so a runner with another Python or cloudpickle
refuses the input with a clear error, and a truncated or altered blob is detected on load.
"""

import hashlib
import json
import platform

import cloudpickle

from .errors import CorruptBlobError, VersionMismatchError

MAGIC = b"KUBEFACE-BLOB-1\n"


def versions():
    """What must match between the master that pickles and the runner that unpickles."""
    return {
        "python": "%s.%s" % tuple(platform.python_version_tuple()[:2]),
        "cloudpickle": cloudpickle.__version__,
    }


def envelope(payload, kind, extra=None):
    """Wrap an already pickled payload with its header."""
    header = dict(versions(), kind=kind, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    if extra:
        header.update(extra)
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def dumps(obj, kind, extra=None):
    """Pickle obj into an envelope; raises whatever cloudpickle raises for unpicklable objects."""
    return envelope(cloudpickle.dumps(obj), kind, extra)


def read_header(blob, where="blob"):
    """Split an envelope into (header, payload) after checking its size and digest."""
    if not blob.startswith(MAGIC):
        raise CorruptBlobError("%s is not a luigi-kubeface blob (bad magic); delete it and rerun" % where)
    end = blob.find(b"\n", len(MAGIC))
    if end < 0:
        raise CorruptBlobError("%s has a truncated header; delete it and rerun" % where)
    try:
        header = json.loads(blob[len(MAGIC) : end])
    except ValueError:
        raise CorruptBlobError("%s has an unreadable header; delete it and rerun" % where) from None
    payload = memoryview(blob)[end + 1 :]
    if len(payload) != header.get("size") or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptBlobError(
            "%s is truncated or altered (%d bytes, expected %s with the recorded digest); "
            "delete it and rerun to recompute it" % (where, len(payload), header.get("size"))
        )
    return header, payload


def check_versions(header, where):
    mine = versions()
    theirs = {k: header.get(k) for k in mine}
    if theirs != mine:
        raise VersionMismatchError(
            "%s was pickled with Python %s and cloudpickle %s, but this runner has Python %s and "
            "cloudpickle %s: run elements in an environment (image) with the master's versions "
            "(e.g. pip install cloudpickle==%s on Python %s)"
            % (where, theirs["python"], theirs["cloudpickle"], mine["python"], mine["cloudpickle"],
               theirs["cloudpickle"], theirs["python"])
        )


def loads_with_header(blob, where="blob"):
    """Verify the envelope and the versions, then unpickle: (header, object)."""
    header, payload = read_header(blob, where)
    check_versions(header, where)
    return header, cloudpickle.loads(payload)


def loads(blob, where="blob"):
    return loads_with_header(blob, where)[1]
