"""One small storage interface, chosen by URL scheme; transient errors are retried here, once.

Every storage is scoped to a base URL (a job's prefix, usually) and speaks in keys relative to it.
"""

import logging
import random
import time
from typing import NamedTuple, Optional, Protocol

from ..errors import ConfigurationError, TransientStorageError

log = logging.getLogger(__name__)


class Head(NamedTuple):
    data: bytes  # the first bytes of a blob
    size: int  # the blob's whole size
    crc32c: Optional[int]  # of the whole blob, computed by the storage itself (GCS), else None


class Storage(Protocol):
    url: str

    def read(self, key: str) -> bytes:
        """The blob's bytes; BlobNotFoundError if there is none."""

    def write(self, key: str, data: bytes) -> None:
        """Create or replace the blob atomically (readers see the old or the new bytes, never part)."""

    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Create the blob atomically unless it exists; False if it existed (it is left untouched)."""

    def read_generation(self, key: str) -> tuple:
        """(bytes, generation): the generation names this version of the blob for write_if_generation."""

    def write_if_generation(self, key: str, data: bytes, generation) -> bool:
        """Replace the blob only if its generation is still `generation` (None: only if there is no blob).

        A compare-and-swap: of two writers holding the same generation, exactly one wins; False for the other.
        """

    def write_stream(self, key: str, stream, size: int) -> None:
        """write() from a readable, seekable binary stream of size bytes, never held in memory at once."""

    def write_stream_if_absent(self, key: str, stream, size: int) -> bool:
        """write_if_absent() from a stream (GCS: a resumable upload with if_generation_match=0)."""

    def open_read(self, key: str):
        """The blob as a readable binary file with a descriptor (a local file, or a private temporary
        file it was streamed into, which has `private = True`), to be closed by the caller;
        BlobNotFoundError if there is none. A file without `private` may change while it is read:
        read it once (private_copy), never verify it and then read it again."""

    def head(self, key: str, limit: int) -> "Head":
        """The blob's first limit bytes, its size and the crc32c the storage computed of it (None if it
        computes none); BlobNotFoundError if there is none. Reads no more than limit bytes."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list:
        """Keys that start with prefix (relative to the storage's URL), in one listing."""

    def children(self, prefix: str) -> list:
        """Names one level below prefix ("a/" for keys a/..., "b" for a blob), without listing deeper."""

    def delete(self, key: str) -> None:
        """Remove the blob; no error if it is already gone."""

    def move(self, key: str, new_key: str) -> None:
        """Rename a blob within the storage without handing its bytes to the caller; BlobNotFoundError if none."""

    def check_writable(self) -> None:
        """Raise ConfigurationError naming the fix if the storage cannot be used at all."""


def _local(url):
    from .local import LocalStorage

    return LocalStorage(url)


def _gcs(url):
    from .gcs import GCSStorage

    return GCSStorage(url)


# Adding a storage means adding one module and one line here.
REGISTRY = {"file": _local, "gs": _gcs}


def open_storage(url, retry_deadline=600.0):
    """The storage for a URL (`gs://bucket/prefix`, `file:///dir` or a plain path), with retries."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in REGISTRY:
        raise ConfigurationError(
            "storage URL %r has the unknown scheme %r: use one of %s, or a local directory path"
            % (url, scheme, ", ".join(s + "://" for s in sorted(REGISTRY)))
        )
    return RetryingStorage(REGISTRY[scheme](url), deadline=retry_deadline)


class RetryingStorage:
    """Retries TransientStorageError with capped exponential backoff and jitter, up to a deadline.

    A deadline rather than a count: outages of GCS last tens of seconds, and a job of ten hours
    should wait them out rather than lose an attempt.
    """

    _METHODS = ("read", "write", "write_if_absent", "write_stream", "write_stream_if_absent", "open_read", "head",
                "read_generation", "write_if_generation", "exists", "list", "children", "delete", "move",
                "check_writable")
    _STREAMING = ("write_stream", "write_stream_if_absent")

    def __init__(self, inner, deadline=600.0, first_delay=0.2, max_delay=10.0):
        self.inner = inner
        self.url = inner.url
        self.deadline = deadline
        self.first_delay = first_delay
        self.max_delay = max_delay

    def __getattr__(self, name):
        target = getattr(self.inner, name)
        if name not in self._METHODS:
            return target

        def call(*args, **kwargs):
            give_up = time.monotonic() + self.deadline
            delay = self.first_delay
            stream = args[1] if name in self._STREAMING else None
            start = stream.tell() if stream is not None else 0
            while True:
                try:
                    if stream is not None:  # a retried upload starts from the stream's beginning again
                        stream.seek(start)
                    return target(*args, **kwargs)
                except TransientStorageError as error:
                    if time.monotonic() + delay > give_up:
                        raise
                    log.warning("storage %s %s failed (%s); retrying in %.1fs", self.url, name, error, delay)
                    time.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, self.max_delay)

        return call
