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
import tempfile

import cloudpickle

from . import signing as keys
from .streams import BlobStream, crc32c as _crc32c, crc32c_combine, pread_into
from ..errors import CorruptBlobError, UntrustedBlobError, VersionMismatchError

MAGIC = b"KUBEFACE-BLOB-1\n"
# The environment variable through which a backend hands the job's signing key (hex) to the runner.
KEY_ENV = "KUBEFACE_SIGNING_KEY"
# The local backend writes the runner's private environment (JSON) into a pipe and names its descriptor
# here instead: what a process got in its environment stays readable in /proc/<pid>/environ.
SECRET_FD_ENV = "KUBEFACE_SECRET_FD"
FIX = "delete it and rerun to recompute it"


def versions():
    """What must match between the master that pickles and the runner that unpickles."""
    return {"python": "%s.%s" % tuple(platform.python_version_tuple()[:2]), "cloudpickle": cloudpickle.__version__}


def _mac(key, header):
    """HMAC-SHA256 of the header without its own signature; the header holds the payload's sha256 and size."""
    text = json.dumps({k: v for k, v in header.items() if k != "hmac"}, sort_keys=True).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def _verifying_key(key, header):
    """The job's key, or for a result an attempt signed, that attempt's key (keys.attempt_key) derived from it;
    None when the header claims an attempt's signature for anything but a result."""
    if header.get("signer") is None:
        return key
    if header.get("signer") != keys.ATTEMPT_SIGNER or header.get("kind") != "result":
        return None
    return keys.attempt_key(
        key, header.get("job"), header.get("element"), header.get("code_version", ""), header.get("attempt")
    )


def envelope(payload, kind, extra=None, key=None):
    """Wrap an already pickled payload with its header, signed with key (bytes) when given."""
    header = dict(versions(), kind=kind, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    if extra:
        header.update(extra)
    if key is not None:
        header["hmac"] = _mac(key, header)
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def read_header(blob, where="blob", key=None, expect=None, fix=FIX, check_payload=True):
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
        signer = _verifying_key(key, header)
        if signer is None or not hmac.compare_digest(given, _mac(signer, header).encode()):
            raise UntrustedBlobError(
                "%s is not signed with this job's key (%s): it was altered in storage or written by "
                "someone without the key, and was not unpickled; %s"
                % (where, "no signature" if signature is None else "bad signature", fix)
            )
        for name, value in (expect or {}).items():
            if header.get(name) != value:
                raise UntrustedBlobError(
                    "%s is signed but belongs elsewhere (%s %r, expected %r): it was copied within the "
                    "bucket and was not unpickled; %s" % (where, name, header.get(name), value, fix)
                )
    payload = memoryview(blob)[end + 1 :]
    if not check_payload:
        return header, payload
    if len(payload) != header.get("size"):
        raise CorruptBlobError(
            "%s is truncated or altered (%d bytes, expected %s); %s" % (where, len(payload), header.get("size"), fix)
        )
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptBlobError(
            "%s is altered (%d bytes as recorded, but its sha256 differs from the recorded "
            "digest); %s" % (where, len(payload), fix)
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
            % (
                where,
                theirs["python"],
                theirs["cloudpickle"],
                mine["python"],
                mine["cloudpickle"],
                theirs["cloudpickle"],
                theirs["python"],
            )
        )


def loads_with_header(blob, where="blob", key=None, expect=None):
    """Verify the envelope (signature first, when a key is given) and the versions, then unpickle."""
    header, payload = read_header(blob, where, key, expect)
    check_versions(header, where)
    return header, cloudpickle.loads(payload)


# -- streaming: blobs of gigabytes through files, each held in memory once ----------------------
#
# The envelope stays MAGIC + JSON header + newline + payload, so blobs written before are read as
# they are. A streamed blob's payload is the pickle stream (protocol 5) followed by its large
# out-of-band buffers (NumPy arrays and other PickleBuffer producers), listed in the signed header
# as "buffers": [[bytes, readonly], ...] with "pickle_size"; the header also holds the payload's
# crc32c, which lets a storage that computes the object's crc32c itself vouch for the payload
# without anyone reading it (crc32c_combine). bytes and bytearray stay in the pickle stream: the C
# pickler writes large ones straight to the file and the unpickler reads them straight into the
# new object (readinto), so neither is copied in memory either.

HEAD_LIMIT = 1 << 20  # a header (and so everything a check reads of a blob) fits in its first 1 MB
OUT_OF_BAND_MIN = 1 << 20  # smaller buffers stay in the pickle stream
_CHUNK = 8 << 20


class Pickled:
    """An object pickled for upload: the pickle stream spooled to a private temporary file, the large
    buffers left in the object's own memory. Digests are computed once; close() drops the file."""

    def __init__(self, obj, tmpdir=None):
        self.file = tempfile.TemporaryFile(dir=tmpdir)
        self.buffers = []  # (memoryview of bytes, readonly)

        def out_of_band(buffer):
            try:
                view = buffer.raw()
            except (BufferError, ValueError):
                return True  # not contiguous: in the stream
            if view.nbytes < OUT_OF_BAND_MIN:
                return True
            self.buffers.append((view, view.readonly))
            return False

        try:
            cloudpickle.dump(obj, self.file, protocol=5, buffer_callback=out_of_band)
            self.file.flush()
        except BaseException:
            self.close()
            raise
        self.pickle_size = self.file.tell()
        self.size = self.pickle_size + sum(v.nbytes for v, _ in self.buffers)
        sha, crc = hashlib.sha256(), 0
        for chunk in self.chunks():
            sha.update(chunk)
            crc = _crc32c(crc, chunk)
        self.sha256, self.crc32c = sha.hexdigest(), crc

    def stream_chunks(self, size=_CHUNK, overlap=0):
        """The pickle stream in chunks (each starting overlap bytes before the previous one's end)."""
        buffer = bytearray(size)
        offset = 0
        while offset < self.pickle_size:
            n = pread_into(self.file.fileno(), memoryview(buffer)[: min(size, self.pickle_size - offset)], offset)
            yield memoryview(buffer)[:n]
            if offset + n >= self.pickle_size:
                return
            offset += max(1, n - overlap)

    def chunks(self):
        """The payload: the pickle stream, then each out-of-band buffer."""
        yield from self.stream_chunks()
        for view, _ in self.buffers:
            for start in range(0, view.nbytes, _CHUNK):
                yield view[start : start + _CHUNK]

    def header(self, kind, extra=None, key=None):
        header = dict(versions(), kind=kind, size=self.size, sha256=self.sha256, crc32c=self.crc32c)
        if self.buffers:
            header.update(pickle_size=self.pickle_size, buffers=[[v.nbytes, ro] for v, ro in self.buffers])
        if extra:
            header.update(extra)
        if key is not None:
            header["hmac"] = _mac(key, header)
        return header

    def blob(self, kind, extra=None, key=None):
        """A readable stream of the whole envelope (header, then payload), for Storage.write_stream."""
        head = MAGIC + json.dumps(self.header(kind, extra, key), sort_keys=True).encode() + b"\n"
        if len(head) > HEAD_LIMIT:
            raise CorruptBlobError(
                "a %s header of %d bytes is over the %d byte limit: too many large buffers"
                % (kind, len(head), HEAD_LIMIT)
            )
        return BlobStream([memoryview(head), (self.file.fileno(), self.pickle_size)] + [v for v, _ in self.buffers])

    def close(self):
        self.buffers = []
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def header_digest(header):
    """What a shared input's key addresses: its signed header, which holds the payload's sha256 and the
    signature, so neither other content nor the same content signed with another key passes for it."""
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()


def read_head(head, total_size, where="blob", key=None, expect=None, fix=FIX, storage_crc32c=None):
    """Check a blob from its first bytes (at most HEAD_LIMIT) and its size: (header, payload offset).

    The signature, place and size are checked as read_header does; the payload itself is checked
    only against the crc32c the storage computed of the whole object, when it gives one (GCS).
    Nothing is unpickled; private_copy checks the payload's sha256 as it copies it, before anything unpickles.
    """
    end = head.find(b"\n", len(MAGIC)) if head.startswith(MAGIC) else -1
    if head.startswith(MAGIC) and end < 0 and len(head) >= HEAD_LIMIT:
        raise CorruptBlobError("%s has no end of header within its first %d bytes; %s" % (where, HEAD_LIMIT, fix))
    header, _ = read_header(head[: end + 1] if end >= 0 else head, where, key, expect, fix, check_payload=False)
    offset = end + 1
    if total_size - offset != header.get("size"):
        raise CorruptBlobError(
            "%s is truncated or altered (%d bytes, expected %s); %s"
            % (where, total_size - offset, header.get("size"), fix)
        )
    if storage_crc32c is not None and isinstance(header.get("crc32c"), int):
        whole = crc32c_combine(_crc32c(0, head[:offset]), header["crc32c"], header["size"])
        if whole != storage_crc32c:
            raise CorruptBlobError(
                "%s is altered (its size is as recorded, but the storage's crc32c of it "
                "differs from the recorded one); %s" % (where, fix)
            )
    return header, offset


def load_stream(file, where="blob", key=None, expect=None, fix=FIX, check=None):
    """Verify and unpickle a blob from a file: (header, object). See private_copy: the bytes unpickled
    are the bytes verified, and the file is read once."""
    from .private_copy import private_copy  # it builds on this module

    with private_copy(file, where, key, expect, fix, check) as copy:
        return copy.header, copy.load()
