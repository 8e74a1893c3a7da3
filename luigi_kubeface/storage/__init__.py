"""One small storage interface, chosen by URL scheme; transient errors are retried here, once.

Every storage is scoped to a base URL (a job's prefix, usually) and speaks in keys relative to it.
Callers ask a storage what they need (can pods reach it, where a browser opens a blob, what a pod
needs for credentials) instead of testing its URL's scheme.
"""

import importlib
import inspect
import logging
import random
import threading
import time
from typing import List, NamedTuple, Optional, Protocol

from ..errors import ConfigurationError, StorageError, TransientStorageError

log = logging.getLogger(__name__)


class Head(NamedTuple):
    data: bytes  # the first bytes of a blob
    size: int  # the blob's whole size
    crc32c: Optional[int]  # of the whole blob, computed by the storage itself (GCS, S3 single-part), else None


# Pages, records and logs open in the browser from a bucket's console instead of downloading.
_TEXT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json", ".log": "text/plain; charset=utf-8"}


def probe_writable(storage, grant):
    """Write and delete a probe blob: storage the credentials cannot write fails before any element runs.
    grant: the permission to name in the error (each store names its own)."""
    probe = ".kubeface-write-probe"
    try:
        storage.write(probe, b"")
        storage.delete(probe)
    except StorageError as error:
        raise ConfigurationError(
            "storage %s cannot be written (%s): grant the credentials %s or choose another "
            "[kubeface] storage_root" % (storage.url, error, grant)
        ) from None


def content_type(key):
    return (
        _TEXT_TYPES.get(key[key.rfind(".") :], "application/octet-stream") if "." in key else "application/octet-stream"
    )


class PodAccess(NamedTuple):
    """What a pod needs to reach a storage: environment entries, volumes and their mounts (Kubernetes JSON)."""

    env: tuple = ()
    volumes: tuple = ()
    mounts: tuple = ()


class Storage(Protocol):
    url: str
    remote: bool  # pods on other machines can reach it (a bucket), unlike a local directory
    checksum: Optional[str]  # the checksum the storage computes of a whole blob itself (Head.crc32c), or None

    def browse_url(self, key: str) -> str:
        """Where a browser opens the blob (file://, the cloud console): the status page's link."""

    def pod_access(self, settings) -> "PodAccess":
        """The environment, Secret references and volumes a pod needs to reach this storage (never a secret's value)."""

    def runner_environment(self) -> dict:
        """Environment (no secrets) that tells a task runner of this machine how to reach the storage as the
        master does (e.g. an endpoint set in [kubeface]); pods get it through pod_access."""

    def container_hint(self) -> str:
        """A line for `kubeface reproduce`: what a container needs to reach the storage ("" if nothing)."""

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

    def list(self, prefix: str) -> List[str]:
        """Keys that start with prefix (relative to the storage's URL), in one listing."""

    def children(self, prefix: str) -> List[str]:  # (`list` here is the method above)
        """Names one level below prefix ("a/" for keys a/..., "b" for a blob), without listing deeper."""

    def delete(self, key: str) -> None:
        """Remove the blob; no error if it is already gone."""

    def move(self, key: str, new_key: str) -> None:
        """Rename a blob within the storage without handing its bytes to the caller; BlobNotFoundError if none."""

    def check_writable(self) -> None:
        """Raise ConfigurationError naming the fix if the storage cannot be used at all."""


# The methods that talk to the storage: RetryingStorage retries these (and only these) on TransientStorageError.
# The other members (remote, checksum, browse_url, pod_access, runner_environment, container_hint) describe it.
IO_METHODS = (
    "read",
    "write",
    "write_if_absent",
    "write_stream",
    "write_stream_if_absent",
    "open_read",
    "head",
    "read_generation",
    "write_if_generation",
    "exists",
    "list",
    "children",
    "delete",
    "move",
    "check_writable",
)
DESCRIPTIVE = ("browse_url", "pod_access", "runner_environment", "container_hint")

# Adding a storage means adding one module and one line here: (scheme, "module:Class"), imported when used.
REGISTRY = {"file": ".local:LocalStorage", "gs": ".gcs:GCSStorage", "s3": ".s3:S3Storage"}
# Each storage's own [kubeface] keys (a dataclass of light imports), by scheme: Settings composes one of each,
# since a process opens storages by URL (configure), not only its storage_root's.
SETTINGS = {"gs": ".gcs:GCSSettings", "s3": ".s3_wire:S3Settings"}

_configured = {"settings": None}
_configured_lock = threading.Lock()


def _load(dotted):
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module, __name__), name)


def settings_classes():
    """{scheme: its storage's settings dataclass}, for the storages that have keys."""
    return {scheme: _load(dotted) for scheme, dotted in SETTINGS.items()}


def configure(settings):
    """The settings storages of this process are opened with (endpoints, regions): set where Settings are
    loaded (the Luigi config, a Client), so every open_storage of the master sees the same ones."""
    with _configured_lock:
        _configured["settings"] = settings


def scheme_of(url):
    return url.split("://", 1)[0] if "://" in url else "file"


def storage_class(url):
    """The class that serves a URL, without opening anything: for what a storage is (remote, pod_access)."""
    scheme = scheme_of(url)
    if scheme not in REGISTRY:
        raise ConfigurationError(
            "storage URL %r has the unknown scheme %r: use one of %s, or a local directory path"
            % (url, scheme, ", ".join(s + "://" for s in sorted(REGISTRY)))
        )
    return _load(REGISTRY[scheme])


def open_storage(url, retry_deadline=600.0):
    """The storage for a URL (`gs://bucket/prefix`, `s3://bucket/prefix`, `file:///dir` or a plain path), with retries."""
    return RetryingStorage(storage_class(url)(url, _configured["settings"]), deadline=retry_deadline)


_SIGNATURES: dict = {}  # (storage class, method name) -> its bound method's signature


def _signature(cls, name, target):
    """A storage method's signature, computed once per class: inspect.signature costs about 10 us a call."""
    found = _SIGNATURES.get((cls, name))
    if found is None:
        found = _SIGNATURES[(cls, name)] = inspect.signature(target)
    return found


class RetryingStorage:
    """Retries TransientStorageError with capped exponential backoff and jitter, up to a deadline.

    A deadline rather than a count: outages of GCS last tens of seconds, and a job of ten hours
    should wait them out rather than lose an attempt.
    """

    def __init__(self, inner, deadline=600.0, first_delay=0.2, max_delay=10.0):
        self.inner = inner
        self.url = inner.url
        self.deadline = deadline
        self.first_delay = first_delay
        self.max_delay = max_delay

    def __getattr__(self, name):
        target = getattr(self.inner, name)
        if name not in IO_METHODS:
            return target
        signature = _signature(type(self.inner), name, target)
        takes_stream = "stream" in signature.parameters

        def call(*args, **kwargs):
            give_up = time.monotonic() + self.deadline
            delay = self.first_delay
            stream = signature.bind(*args, **kwargs).arguments["stream"] if takes_stream else None
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
