"""Blobs carry a small JSON header (versions, digest) in front of the cloudpickle payload.

The header is read before anything is unpickled, so a runner with another Python or cloudpickle
refuses the input with a clear error, and a truncated or altered blob is detected on load. The
header is signed (HMAC-SHA256 with the job's key, see keys.py and docs/security.md) and holds the
payload's digest, so a blob written by someone without the key is refused before it is unpickled.
"""

import hashlib
import hmac
import json
import platform

import cloudpickle

from .errors import CorruptBlobError, UntrustedBlobError, VersionMismatchError

MAGIC = b"KUBEFACE-BLOB-1\n"
# The environment variable through which a backend hands the job's signing key (hex) to the runner.
KEY_ENV = "KUBEFACE_SIGNING_KEY"
# The local backend writes the runner's private environment (JSON) into a pipe and names its descriptor
# here instead: what a process got in its environment stays readable in /proc/<pid>/environ.
SECRET_FD_ENV = "KUBEFACE_SECRET_FD"
_FIX = "delete it and rerun to recompute it"


def versions():
    """What must match between the master that pickles and the runner that unpickles."""
    return {
        "python": "%s.%s" % tuple(platform.python_version_tuple()[:2]),
        "cloudpickle": cloudpickle.__version__,
    }


def _mac(key, header):
    """HMAC-SHA256 of the header without its own signature; the header holds the payload's sha256 and size."""
    text = json.dumps({k: v for k, v in header.items() if k != "hmac"}, sort_keys=True).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def envelope(payload, kind, extra=None, key=None):
    """Wrap an already pickled payload with its header, signed with key (bytes) when given."""
    header = dict(versions(), kind=kind, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    if extra:
        header.update(extra)
    if key is not None:
        header["hmac"] = _mac(key, header)
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def dumps(obj, kind, extra=None, key=None):
    """Pickle obj into an envelope; raises whatever cloudpickle raises for unpicklable objects."""
    return envelope(cloudpickle.dumps(obj), kind, extra, key)


def read_header(blob, where="blob", key=None, expect=None, fix=_FIX):
    """Split an envelope into (header, payload) after checking its signature, place, size and digest.

    With a key, the header must carry a valid HMAC and the fields in expect (kind, job, element),
    so a blob copied from another element or job is refused too. Nothing is unpickled here.
    """
    if not blob.startswith(MAGIC):
        raise CorruptBlobError("%s is not a luigi-kubeface blob (bad magic); %s" % (where, fix))
    end = blob.find(b"\n", len(MAGIC))
    if end < 0:
        raise CorruptBlobError("%s has a truncated header; %s" % (where, fix))
    try:
        header = json.loads(blob[len(MAGIC) : end])
    except (ValueError, RecursionError):  # RecursionError: a header nested thousands deep
        header = None
    if not isinstance(header, dict):
        raise CorruptBlobError("%s has an unreadable header; %s" % (where, fix))
    if key is not None:
        signature = header.get("hmac")
        # Bytes: compare_digest raises TypeError on non-ASCII str, which would crash the master every run.
        given = signature.encode("utf-8", "surrogatepass") if isinstance(signature, str) else b""
        if not hmac.compare_digest(given, _mac(key, header).encode()):
            raise UntrustedBlobError(
                "%s is not signed with this job's key (%s): it was altered in storage or written by "
                "someone without the key, and was not unpickled; %s"
                % (where, "no signature" if signature is None else "bad signature", fix))
        for name, value in (expect or {}).items():
            if header.get(name) != value:
                raise UntrustedBlobError(
                    "%s is signed but belongs elsewhere (%s %r, expected %r): it was copied within the "
                    "bucket and was not unpickled; %s" % (where, name, header.get(name), value, fix))
    payload = memoryview(blob)[end + 1 :]
    if len(payload) != header.get("size"):
        raise CorruptBlobError("%s is truncated or altered (%d bytes, expected %s); %s"
                               % (where, len(payload), header.get("size"), fix))
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptBlobError("%s is altered (%d bytes as recorded, but its sha256 differs from the recorded "
                               "digest); %s" % (where, len(payload), fix))
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


def loads_with_header(blob, where="blob", key=None, expect=None):
    """Verify the envelope (signature first, when a key is given) and the versions, then unpickle."""
    header, payload = read_header(blob, where, key, expect)
    check_versions(header, where)
    return header, cloudpickle.loads(payload)


def loads(blob, where="blob", key=None, expect=None):
    return loads_with_header(blob, where, key, expect)[1]
