"""What S3 storage (s3.py) says to boto3 and hears back, pure: its [kubeface] keys and the options a
runner is handed, the CRC32C header of a part, a part read from a stream, botocore's errors translated to ours."""

import base64
import urllib.parse
from dataclasses import dataclass

from ..errors import BlobNotFoundError, ConfigurationError, StorageError, TransientStorageError, check_ranges
from ..settings_fields import setting

# How a task runner learns the master's [kubeface] s3_* settings (runner_environment, pod_access).
ENV = {
    "s3_endpoint_url": "KUBEFACE_S3_ENDPOINT_URL",
    "s3_region": "KUBEFACE_S3_REGION",
    "s3_addressing_style": "KUBEFACE_S3_ADDRESSING_STYLE",
}
READ_CHUNK = 1 << 20
# Codes S3 (and compatible stores) answer when a retry later will do: throttling, overload, races.
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "ConditionalRequestConflict",
}
STYLES = ("auto", "path", "virtual")


@dataclass(frozen=True)
class S3Settings:
    """s3:// storage (pip install "luigi-kubeface[s3]"): an empty key leaves it to boto3 (environment, IRSA)."""

    s3_endpoint_url: str = setting(
        "",
        "An S3-compatible store's endpoint (Ceph, SeaweedFS, MinIO: "
        "`http://host:port`); empty: AWS, or boto3's `AWS_ENDPOINT_URL_S3`.",
    )
    s3_region: str = setting("", "The bucket's region; empty: boto3's (`AWS_REGION`, the profile), else `us-east-1`.")
    s3_addressing_style: str = setting(
        "auto",
        "`auto`: path-style (`endpoint/bucket/key`) with an "
        "`s3_endpoint_url`, virtual-hosted on AWS; `path`; `virtual`.",
    )
    s3_key_secret: str = setting(
        "",
        "A Secret holding `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, handed "
        "to the pods as Secret references when IRSA is not used.",
    )

    def __post_init__(self):
        check_ranges(self, [("s3_addressing_style", self.s3_addressing_style in STYLES, "auto, path or virtual")])


def options(settings=None, environ=None):
    """(endpoint, region, addressing style): the master's settings, else what its runner was handed (ENV)."""
    found = []
    for name, env in ENV.items():
        value = getattr(settings, name, "") if settings is not None else ""
        found.append(value or (environ or {}).get(env, ""))
    endpoint, region, style = found[0], found[1], found[2] or "auto"
    if style not in STYLES:
        raise ConfigurationError("%s = %r: use auto, path or virtual" % (ENV["s3_addressing_style"], style))
    return endpoint, region, style


def on_aws(endpoint_url):
    return urllib.parse.urlsplit(endpoint_url).hostname.endswith(".amazonaws.com")


def part_crc32c(data):
    """CRC32C as S3's x-amz-checksum-crc32c header wants it (big-endian, base64); a part is read in slices
    (google_crc32c takes only bytes), so no second copy of it is made."""
    import google_crc32c

    if isinstance(data, bytes):
        value = google_crc32c.value(data)
    else:
        view, value = memoryview(data), 0
        for start in range(0, len(view), READ_CHUNK):
            value = google_crc32c.extend(value, bytes(view[start : start + READ_CHUNK]))
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def read_part(stream, size, what):
    """size bytes of the stream in one new bytearray (readinto: a stream's read() may join pieces, a second copy)."""
    if not hasattr(stream, "readinto"):
        data = stream.read(size)
    else:
        data, done = bytearray(size), 0
        view = memoryview(data)
        while done < size:
            n = stream.readinto(view[done:])
            if not n:
                break
            done += n
        del view
        data = data if done == size else data[:done]
    if len(data) != size:
        raise StorageError("write %s: the stream ended %d bytes early" % (what, size - len(data)))
    return data


def error_code(error):
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):
        return None, None
    return error.response.get("Error", {}).get("Code"), error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def translate(error, what):
    """Map botocore errors to ours: transient ones are retried by RetryingStorage."""
    from botocore import exceptions as boto

    if isinstance(error, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return ConfigurationError(
            "%s: no AWS credentials found (%s): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile "
            "(AWS_PROFILE), or use IRSA / EKS Pod Identity (or [kubeface] s3_key_secret) in the cluster" % (what, error)
        )
    code, status = error_code(error)
    if code in ("NoSuchKey", "404", "NotFound"):
        return BlobNotFoundError("%s: not found" % what)
    if code == "NoSuchBucket":
        return ConfigurationError(
            "%s: the bucket does not exist: create it (aws s3 mb s3://BUCKET) or fix [kubeface] storage_root" % what
        )
    if code in _TRANSIENT_CODES or (status or 0) >= 500 or status == 429:
        return TransientStorageError("%s: %s" % (what, error))
    if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return StorageError(
            "%s: permission denied (%s): grant the credentials s3:GetObject, s3:PutObject, "
            "s3:DeleteObject and s3:ListBucket on the bucket" % (what, error)
        )
    transport = (boto.ConnectionError, boto.HTTPClientError, boto.ResponseStreamingError, ConnectionError, TimeoutError)
    if isinstance(error, transport):
        return TransientStorageError("%s: %s" % (what, error))
    return StorageError("%s: %s" % (what, error))
