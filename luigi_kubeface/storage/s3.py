"""Amazon S3 and S3-compatible stores (Ceph, SeaweedFS, MinIO) through boto3; errors mapped to ours.

Write-once and the lease's compare-and-swap are the server's own conditional writes (If-None-Match: *
and If-Match: <ETag> on PutObject and CompleteMultipartUpload); blobs of any size stream through
multipart uploads and ranged GETs, one part in memory at a time. boto3 is an optional extra:
`pip install "luigi-kubeface[s3]"`. Its keys and pure helpers are s3_wire.py's, its clients s3_client.py's.
"""

import base64
import tempfile
import os
import urllib.parse

from ..errors import BlobNotFoundError, ConfigurationError, KubefaceError, TransientStorageError
from . import Head, PodAccess, content_type, probe_writable
from .s3_client import client as _client
from .s3_wire import ENV, READ_CHUNK, error_code, on_aws, options, part_crc32c, read_part, translate

PART = 64 << 20  # one multipart part (and one ranged GET): what an upload or download holds in memory
COPY_LIMIT = 5 << 30  # CopyObject's own limit; larger blobs are moved with UploadPartCopy
COPY_PART = 1 << 30


class _Refused(Exception):
    """A precondition did not hold (412): the write did not happen."""


class S3Storage:
    remote = True
    checksum = "crc32c"  # every upload carries its CRC32C; the server keeps it whole for single-part objects

    def __init__(self, url, settings=None, environ=None):
        rest = url[len("s3://") :]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise ConfigurationError("S3 URL %r names no bucket: use s3://BUCKET/PREFIX" % url)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = "s3://%s/%s" % (self.bucket, self.prefix)
        self.endpoint, self.region, self.style = options(settings, os.environ if environ is None else environ)
        self.copy_limit, self.copy_part = COPY_LIMIT, COPY_PART

    # -- what callers ask of a storage ----------------------------------------------------------

    def browse_url(self, key):
        """The S3 console on AWS; elsewhere the object's path-style URL on the endpoint."""
        endpoint = self._client().meta.endpoint_url
        if on_aws(endpoint):
            return "https://s3.console.aws.amazon.com/s3/object/%s?prefix=%s" % (
                self.bucket,
                urllib.parse.quote(self.prefix + key),
            )
        return "%s/%s/%s" % (endpoint.rstrip("/"), self.bucket, urllib.parse.quote(self.prefix + key))

    @staticmethod
    def pod_access(settings):
        """The endpoint settings, and the s3_key_secret's keys as Secret references (never their values)."""
        endpoint, region, style = options(settings)
        env = [
            {"name": ENV[name], "value": value}
            for name, value in (("s3_endpoint_url", endpoint), ("s3_region", region))
            if value
        ]
        if style != "auto":
            env.append({"name": ENV["s3_addressing_style"], "value": style})
        for name, optional in (
            ("AWS_ACCESS_KEY_ID", False),
            ("AWS_SECRET_ACCESS_KEY", False),
            ("AWS_SESSION_TOKEN", True),
        ):
            if settings.s3_key_secret:
                env.append(
                    {
                        "name": name,
                        "valueFrom": {
                            "secretKeyRef": {"name": settings.s3_key_secret, "key": name, "optional": optional}
                        },
                    }
                )
        return PodAccess(env=tuple(env))

    def runner_environment(self):
        values = {
            "s3_endpoint_url": self.endpoint,
            "s3_region": self.region,
            "s3_addressing_style": "" if self.style == "auto" else self.style,
        }
        return {ENV[name]: value for name, value in values.items() if value}

    def container_hint(self):
        hint = "# the container needs AWS credentials, e.g. -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY"
        for name, value in sorted(self.runner_environment().items()):
            hint += " -e %s=%s" % (name, value)
        return hint

    # -- plumbing ---------------------------------------------------------------------------------

    def _client(self):
        return _client(self.endpoint, self.region, self.style)

    def _call(self, what, key, fn):
        try:
            return fn(self._client(), self.prefix + key)
        except KubefaceError:
            raise
        except Exception as error:  # noqa: BLE001 - every SDK error is translated, none leaks
            mapped = translate(error, "%s %s%s" % (what, self.url, key))
            if isinstance(mapped, BlobNotFoundError) and what != "read":
                mapped = self._missing_bucket_error() or mapped
            raise mapped from error

    def _missing_bucket_error(self):
        try:
            self._client().head_bucket(Bucket=self.bucket)
        except Exception as error:  # noqa: BLE001 - a diagnosis only
            if error_code(error)[0] in ("404", "NoSuchBucket", "NotFound"):
                return ConfigurationError(
                    "bucket s3://%s does not exist: create it (aws s3 mb s3://%s) or fix [kubeface] storage_root"
                    % (self.bucket, self.bucket)
                )
        return None

    def _put(self, client, name, data, **conditions):
        """One PutObject with its CRC32C; _Refused when a condition (If-None-Match, If-Match) did not hold."""
        try:
            return client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=data,
                ContentType=content_type(name),
                ChecksumAlgorithm="CRC32C",
                ChecksumCRC32C=part_crc32c(data),
                **conditions,
            )
        except Exception as error:  # noqa: BLE001
            code, status = error_code(error)
            if status == 412 or code == "PreconditionFailed":
                raise _Refused() from None
            if conditions.get("IfMatch") and code in ("NoSuchKey", "404"):
                raise _Refused() from None  # the blob was deleted since: the swap's generation is gone
            raise

    def _conditional(self, what, key, data, conditions):
        def put(client, name):
            try:
                self._put(client, name, data, **conditions)
                return True
            except _Refused:
                return False

        return self._call(what, key, put)

    # -- the storage protocol -----------------------------------------------------------------------

    def read(self, key):
        return self._call("read", key, lambda c, name: c.get_object(Bucket=self.bucket, Key=name)["Body"].read())

    def write(self, key, data):
        self._call("write", key, lambda c, name: self._put(c, name, data))

    def write_if_absent(self, key, data):
        """If-None-Match: * (412: the key exists; a 409 conflict is transient and retried, then 412)."""
        return self._conditional("write", key, data, {"IfNoneMatch": "*"})

    def read_generation(self, key):
        """One GetObject: the bytes and the ETag of the same version."""

        def fetch(client, name):
            response = client.get_object(Bucket=self.bucket, Key=name)
            return response["Body"].read(), response["ETag"]

        return self._call("read", key, fetch)

    def write_if_generation(self, key, data, generation):
        """If-Match on the ETag: the server compares, so of two masters exactly one wins."""
        conditions = {"IfNoneMatch": "*"} if generation is None else {"IfMatch": generation}
        return self._conditional("write", key, data, conditions)

    def write_stream(self, key, stream, size):
        self._call("write", key, lambda c, name: self._upload(c, name, stream, size, {}))

    def write_stream_if_absent(self, key, stream, size):
        def upload(client, name):
            try:
                self._upload(client, name, stream, size, {"IfNoneMatch": "*"})
                return True
            except _Refused:
                return False

        return self._call("write", key, upload)

    def _upload(self, client, name, stream, size, conditions):
        if size <= PART:
            self._put(client, name, read_part(stream, size, self.url + name), **conditions)
        else:
            self._multipart(client, name, stream, size, conditions)

    def _multipart(self, client, name, stream, size, conditions):
        """Parts of PART bytes, each with its CRC32C, read one at a time; the condition is checked at completion.

        Any failure aborts the upload: a 409 conflict is transient, so RetryingStorage restarts it from the
        stream's beginning; a 412 means the key exists and nothing is written."""
        upload = client.create_multipart_upload(
            Bucket=self.bucket, Key=name, ContentType=content_type(name), ChecksumAlgorithm="CRC32C"
        )["UploadId"]
        try:
            parts, done = [], 0
            while done < size:
                data = read_part(stream, min(PART, size - done), self.url + name)
                crc = part_crc32c(data)
                etag = client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload,
                    PartNumber=len(parts) + 1,
                    Body=data,
                    ChecksumAlgorithm="CRC32C",
                    ChecksumCRC32C=crc,
                )["ETag"]
                parts.append({"PartNumber": len(parts) + 1, "ETag": etag, "ChecksumCRC32C": crc})
                done += len(data)
                del data
            try:
                client.complete_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload, MultipartUpload={"Parts": parts}, **conditions
                )
            except Exception as error:  # noqa: BLE001
                if error_code(error)[1] == 412 or error_code(error)[0] == "PreconditionFailed":
                    raise _Refused() from None
                raise
        except BaseException:
            try:
                client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            except Exception:  # noqa: BLE001 - the bucket's lifecycle rule removes what is left (README)
                pass
            raise

    def _meta(self, client, name):
        """(size, ETag, crc32c or None): the CRC32C only when the server holds it for the whole object.

        A multipart object's checksum is of its parts' checksums (ETag "...-N"), not of its bytes."""
        meta = client.head_object(Bucket=self.bucket, Key=name, ChecksumMode="ENABLED")
        etag, crc = meta["ETag"], meta.get("ChecksumCRC32C")
        whole = crc and "-" not in etag and "-" not in crc and meta.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        return meta["ContentLength"], etag, int.from_bytes(base64.b64decode(crc), "big") if whole else None

    def _range(self, client, name, etag, start, end):
        """A ranged GET of that very version (If-Match); replaced meanwhile: transient, read again."""
        try:
            return client.get_object(Bucket=self.bucket, Key=name, Range="bytes=%d-%d" % (start, end), IfMatch=etag)[
                "Body"
            ]
        except Exception as error:  # noqa: BLE001
            if error_code(error)[1] == 412:
                raise TransientStorageError("read %s%s: replaced while it was read" % (self.url, name)) from None
            raise

    def head(self, key, limit):
        """Metadata (size, ETag, CRC32C), then a ranged read of the first bytes of that version."""

        def first_bytes(client, name):
            size, etag, crc = self._meta(client, name)
            data = self._range(client, name, etag, 0, min(limit, size) - 1).read() if size and limit > 0 else b""
            return Head(data, size, crc)

        return self._call("read", key, first_bytes)

    def open_read(self, key):
        """Ranged GETs of one version into a private temporary file (marked `private`): memory stays flat."""

        def download(client, name):
            size, etag, _ = self._meta(client, name)
            f = tempfile.TemporaryFile()
            try:
                for start in range(0, size, PART):
                    body = self._range(client, name, etag, start, min(start + PART, size) - 1)
                    for chunk in body.iter_chunks(READ_CHUNK):
                        f.write(chunk)
                f.flush()
                if f.tell() != size:
                    raise TransientStorageError("read %s%s: %d of %d bytes arrived" % (self.url, name, f.tell(), size))
                f.seek(0)
                f.private = True  # nobody else can open it: private_copy unpickles it without a second copy
                return f
            except BaseException:
                f.close()
                raise

        return self._call("read", key, download)

    def exists(self, key):
        def look(client, name):
            try:
                client.head_object(Bucket=self.bucket, Key=name)
                return True
            except Exception as error:  # noqa: BLE001
                if error_code(error)[0] in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

        return self._call("exists", key, look)

    def _pages(self, client, prefix, **delimiter):
        """ListObjectsV2, every page (1,000 keys each)."""
        return client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, **delimiter)

    def list(self, prefix):
        def names(client, full):
            skip = len(self.prefix)
            return sorted(o["Key"][skip:] for page in self._pages(client, full) for o in page.get("Contents", ()))

        return self._call("list", prefix, names)

    def children(self, prefix):
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""

        def names(client, full):
            skip, found = len(full), []
            for page in self._pages(client, full, Delimiter="/"):
                found += [o["Key"][skip:] for o in page.get("Contents", ())]
                found += [p["Prefix"][skip:] for p in page.get("CommonPrefixes", ())]
            return sorted(found)

        return self._call("list", prefix, names)

    def delete(self, key):
        self._call("delete", key, lambda c, name: c.delete_object(Bucket=self.bucket, Key=name))

    def move(self, key, new_key):
        """S3 has no rename: a server-side copy of that version (UploadPartCopy above 5 GB), then a delete."""

        def rename(client, name):
            size, etag, _ = self._meta(client, name)
            target = self.prefix + new_key
            source = {"Bucket": self.bucket, "Key": name}
            if size <= self.copy_limit:
                client.copy_object(Bucket=self.bucket, Key=target, CopySource=source, CopySourceIfMatch=etag)
            else:
                self._copy_parts(client, source, etag, size, target)
            client.delete_object(Bucket=self.bucket, Key=name)

        self._call("read", key, rename)

    def _copy_parts(self, client, source, etag, size, target):
        upload = client.create_multipart_upload(Bucket=self.bucket, Key=target)["UploadId"]
        try:
            parts = []
            for start in range(0, size, self.copy_part):
                end = min(start + self.copy_part, size) - 1
                copied = client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload,
                    PartNumber=len(parts) + 1,
                    CopySource=source,
                    CopySourceRange="bytes=%d-%d" % (start, end),
                    CopySourceIfMatch=etag,
                )
                parts.append({"PartNumber": len(parts) + 1, "ETag": copied["CopyPartResult"]["ETag"]})
            client.complete_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload)
            except Exception:  # noqa: BLE001
                pass
            raise

    def check_writable(self):
        missing = self._missing_bucket_error()
        if missing:
            raise missing
        probe_writable(self, "s3:PutObject and s3:DeleteObject on the bucket")
