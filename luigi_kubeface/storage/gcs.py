"""Google Cloud Storage through google-cloud-storage; errors are mapped to luigi-kubeface's own."""

import base64
import os
import tempfile
import threading
from dataclasses import dataclass

from ..errors import BlobNotFoundError, ConfigurationError, KubefaceError, StorageError, TransientStorageError
from ..settings_fields import setting
from . import Head, PodAccess, content_type, probe_writable

KEY_PATH = "/var/secrets/google"  # where a pod mounts the gcs_key_secret
# Set by the tests (and by whoever runs fake-gcs-server): the SDK sends every request to this emulator.
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


@dataclass(frozen=True)
class GCSSettings:
    """gs:// storage: Google Cloud Storage (credentials: Application Default Credentials, Workload Identity)."""

    gcs_key_secret: str = setting(
        "", "A Secret holding `key.json` for GCS, mounted in the pods when Workload Identity is not used."
    )


def emulator_workarounds(environ):
    """Whether to work around fake-gcs-server (its issue 1967: a resumable upload ignores
    if_generation_match=0): only when the SDK talks to the emulator, never to GCS itself."""
    return bool(environ.get(EMULATOR_ENV))


_clients: dict = {}  # "client" -> this process's google-cloud-storage client
# RetryingStorage is the one place that retries; the SDK's own retries would stack under it.
_CALL = {"retry": None, "timeout": 120}
# A listing asks for the names alone (a finished job's rerun lists its 50,000 results once), in pages
# as large as the server allows: without maxResults GCS sends its largest page (1,000 names; a larger
# maxResults is capped to it) and fake-gcs-server sends all at once, where asking for pages of 5,000
# made it scan the whole bucket for each (10 times slower at 50,000, measured).
_LIST_FIELDS = "items(name),nextPageToken"
_LIST_PAGE = None
_clients_lock = threading.Lock()
# The SDK's own default: fewer round trips. An upload holds two chunks in memory: the one it sent
# (its response keeps it) and the one it reads (made with one copy: BlobStream.read).
_UPLOAD_CHUNK = 100 << 20


def _client():
    """One client per process: it holds the connection pool and the credentials."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    with _clients_lock:
        if "client" not in _clients:
            try:
                _clients["client"] = storage.Client()
            except DefaultCredentialsError as error:
                raise ConfigurationError(
                    "no Google Cloud credentials found (%s): run `gcloud auth application-default "
                    "login`, set GOOGLE_APPLICATION_CREDENTIALS to a key file, or use Workload "
                    "Identity in the cluster" % str(error).splitlines()[0]
                ) from None
        return _clients["client"]


def _after_fork_in_child():
    """A forked process (Luigi's --workers N) never uses its parent's client: the client's background threads
    (bucket metadata fetches) do not exist in the child, and a lock one of them held at the fork stays held
    for good. The child makes its own client, and its own lock."""
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _translate(error, what):
    """Map SDK and transport errors to ours: transient ones are retried by RetryingStorage."""
    from google.api_core import exceptions as api
    from google.auth.exceptions import TransportError
    import requests

    if isinstance(error, api.NotFound):
        return BlobNotFoundError("%s: not found" % what)
    transient = (
        api.TooManyRequests,
        api.InternalServerError,
        api.BadGateway,
        api.ServiceUnavailable,
        api.GatewayTimeout,
        requests.ConnectionError,
        requests.Timeout,
        TransportError,
        ConnectionError,
        TimeoutError,
    )
    if isinstance(error, transient):
        return TransientStorageError("%s: %s" % (what, error))
    if isinstance(error, api.Forbidden) and "quota" in str(error).lower():
        return TransientStorageError("%s: %s" % (what, error))
    if isinstance(error, api.Forbidden):
        return StorageError(
            "%s: permission denied (%s): grant the credentials storage.objects access on the bucket" % (what, error)
        )
    return StorageError("%s: %s" % (what, error))


class GCSStorage:
    remote = True
    checksum = "crc32c"  # GCS computes every object's crc32c itself (Head.crc32c)

    def __init__(self, url, settings=None):
        rest = url[len("gs://") :]
        self.bucket_name, _, prefix = rest.partition("/")
        if not self.bucket_name:
            raise ConfigurationError("GCS URL %r names no bucket: use gs://BUCKET/PREFIX" % url)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = "gs://%s/%s" % (self.bucket_name, self.prefix)
        self._check_before_create = emulator_workarounds(os.environ)

    def browse_url(self, key):
        """The Cloud console's authenticated URL: it opens pages, records and logs in the browser."""
        return "https://storage.cloud.google.com/%s/%s%s" % (self.bucket_name, self.prefix, key)

    @staticmethod
    def pod_access(settings):
        """Workload Identity needs nothing here; else the gcs_key_secret's key.json, mounted read-only."""
        if not settings.gcs_key_secret:
            return PodAccess()
        return PodAccess(
            env=({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": KEY_PATH + "/key.json"},),
            volumes=({"name": "gcs-key", "secret": {"secretName": settings.gcs_key_secret}},),
            mounts=({"name": "gcs-key", "mountPath": KEY_PATH, "readOnly": True},),
        )

    def runner_environment(self):
        return {}

    def container_hint(self):
        return "# the container needs Google credentials, e.g. -v ~/.config/gcloud:/tmp/.config/gcloud:ro"

    def _here(self):
        """The bucket through this process's client, made anew on each call (an object, no request): a
        bucket kept on this storage would keep the client of the process that made it, and a forked Luigi
        worker would go on using its parent's connection pool, locks and all (a job that hung for good)."""
        return _client().bucket(self.bucket_name)

    def _blob(self, key):
        return self._here().blob(self.prefix + key)

    def _call(self, what, key, fn):
        try:
            return fn()
        except KubefaceError:  # already ours (missing credentials, a mapped error)
            raise
        except Exception as error:  # noqa: BLE001 - every SDK error is translated, none leaks
            mapped = _translate(error, "%s %s%s" % (what, self.url, key))
            if isinstance(mapped, BlobNotFoundError) and what != "read":
                mapped = self._missing_bucket_error() or mapped
            raise mapped from error

    def _missing_bucket_error(self):
        try:
            if not _client().bucket(self.bucket_name).exists(**_CALL):
                return ConfigurationError(
                    "bucket gs://%s does not exist: create it (gcloud storage buckets create "
                    "gs://%s) or fix [kubeface] storage_root" % (self.bucket_name, self.bucket_name)
                )
        except Exception:  # noqa: BLE001 - best effort diagnosis only
            return None
        return None

    def read(self, key):
        return self._call("read", key, lambda: self._blob(key).download_as_bytes(**_CALL))

    def write(self, key, data):
        self._call(
            "write", key, lambda: self._blob(key).upload_from_string(data, content_type=content_type(key), **_CALL)
        )

    def _streamed(self, key):
        blob = self._blob(key)
        blob.chunk_size = _UPLOAD_CHUNK
        return blob

    def write_stream(self, key, stream, size):
        self._call(
            "write",
            key,
            lambda: self._streamed(key).upload_from_file(stream, size=size, content_type=content_type(key), **_CALL),
        )

    def write_stream_if_absent(self, key, stream, size):
        """A resumable upload that only creates: 412 if any generation exists, and results stay write-once.

        GCS checks the precondition when the upload completes; fake-gcs-server ignores it on resumable
        uploads (its issue 1967), so against the emulator only an existing blob is looked for first.
        """
        from google.api_core.exceptions import PreconditionFailed

        def upload():
            if self._check_before_create and self._blob(key).exists(**_CALL):
                return False
            try:
                self._streamed(key).upload_from_file(stream, size=size, if_generation_match=0, **_CALL)
                return True
            except PreconditionFailed:
                return False

        return self._call("write", key, upload)

    def open_read(self, key):
        """Streamed (checksummed by the SDK) into a private temporary file (marked `private`): memory stays flat."""

        def download():
            f = tempfile.TemporaryFile()
            try:
                self._blob(key).download_to_file(f, **_CALL)
                f.flush()
                f.seek(0)
                f.private = True  # nobody else can open it: private_copy unpickles it without a second copy
                return f
            except BaseException:
                f.close()
                raise

        return self._call("read", key, download)

    def head(self, key, limit):
        """Metadata (size, crc32c), then a ranged read of the first bytes of that very generation."""

        def first_bytes():
            blob = self._here().get_blob(self.prefix + key, **_CALL)
            if blob is None:
                raise BlobNotFoundError("read %s%s: not found" % (self.url, key))
            crc = int.from_bytes(base64.b64decode(blob.crc32c), "big") if blob.crc32c else None
            data = b""
            if blob.size and limit > 0:
                data = blob.download_as_bytes(
                    start=0, end=min(limit, blob.size) - 1, checksum=None, if_generation_match=blob.generation, **_CALL
                )
            return Head(data, blob.size or 0, crc)

        return self._call("read", key, first_bytes)

    def write_if_absent(self, key, data):
        """if_generation_match=0 makes the upload fail with 412 when any generation exists."""
        from google.api_core.exceptions import PreconditionFailed

        def upload():
            try:
                self._blob(key).upload_from_string(data, if_generation_match=0, **_CALL)
                return True
            except PreconditionFailed:
                return False

        return self._call("write", key, upload)

    def read_generation(self, key):
        """The object's generation from its metadata, then its bytes only if that generation is still current."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        def fetch():
            for _ in range(10):  # replaced between the two requests: read the new one
                meta = self._here().get_blob(self.prefix + key, **_CALL)
                if meta is None:
                    raise NotFound("no object")
                try:
                    return self._blob(key).download_as_bytes(if_generation_match=meta.generation, **_CALL), str(
                        meta.generation
                    )
                except (PreconditionFailed, NotFound):
                    continue
            raise TransientStorageError("read %s%s: replaced on every read" % (self.url, key))

        return self._call("read", key, fetch)

    def write_if_generation(self, key, data, generation):
        """if_generation_match: GCS itself compares, so two masters on two machines cannot both win."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        def upload():
            try:
                self._blob(key).upload_from_string(
                    data, content_type=content_type(key), if_generation_match=int(generation or 0), **_CALL
                )
                return True
            except (PreconditionFailed, NotFound):
                return False

        return self._call("write", key, upload)

    def exists(self, key):
        return self._call("exists", key, lambda: self._blob(key).exists(**_CALL))

    def list(self, prefix):
        def names():
            skip = len(self.prefix)
            pages = _client().list_blobs(
                self.bucket_name, prefix=self.prefix + prefix, fields=_LIST_FIELDS, page_size=_LIST_PAGE, **_CALL
            )
            pages.item_to_value = lambda _, item: item["name"]  # names only: no Blob object per result
            return sorted(name[skip:] for name in pages)

        return self._call("list", prefix, names)

    def children(self, prefix):
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""

        def names():
            skip = len(self.prefix + prefix)
            pages = _client().list_blobs(self.bucket_name, prefix=self.prefix + prefix, delimiter="/", **_CALL)
            blobs = [b.name[skip:] for b in pages]  # consuming the pages fills pages.prefixes
            return sorted(blobs + [p[skip:] for p in pages.prefixes])

        return self._call("list", prefix, names)

    def delete(self, key):
        from google.api_core.exceptions import NotFound

        def remove():
            try:
                self._blob(key).delete(**_CALL)
            except NotFound:
                pass

        self._call("delete", key, remove)

    def move(self, key, new_key):
        """GCS has no rename: a server-side copy, then the original is deleted (no bytes reach us)."""

        def rename():
            blob = self._blob(key)
            bucket = self._here()
            bucket.copy_blob(blob, bucket, self.prefix + new_key, **_CALL)
            blob.delete(**_CALL)

        self._call("read", key, rename)

    def check_writable(self):
        missing = self._missing_bucket_error()
        if missing:
            raise missing
        probe_writable(self, "write access to the bucket")
