"""S3 beyond the shared contract: moto's conditional writes checked against S3's documented ones (where
moto differs, the test says so), multipart uploads and copies, outages, and what the storage tells callers."""

import base64
import io
import os
import threading

import google_crc32c
import pytest
from botocore.exceptions import ClientError

from infra.servers import MotoS3
from luigi_kubeface import Client
from luigi_kubeface.errors import BlobNotFoundError, ConfigurationError, TransientStorageError
from luigi_kubeface.settings import Settings
from luigi_kubeface.storage import open_storage, s3, s3_client, s3_wire
from elements import square
from support import FAST

MB = 1 << 20


def crc(data):
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def bucket_of(root):
    return root[len("s3://") :].split("/")[0]


def status(error):
    return error.value.response["ResponseMetadata"]["HTTPStatusCode"], error.value.response["Error"]["Code"]


def multipart(client, bucket, key, parts, **conditions):
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = [
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n + 1, Body=p)["ETag"]
        for n, p in enumerate(parts)
    ]
    return client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]},
        **conditions,
    )


def test_moto_answers_conditional_writes_as_s3_documents_them(moto_s3, s3_root):
    """If-None-Match: * gives 412 on an existing key, for PutObject and CompleteMultipartUpload; If-Match a
    stale ETag 412, on a missing key 404 NoSuchKey (S3's documented answers)."""
    client, bucket = moto_s3.client(), bucket_of(s3_root)
    first = client.put_object(Bucket=bucket, Key="k", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=bucket, Key="k", Body=b"two", IfNoneMatch="*")
    assert status(refused) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as refused:
        multipart(client, bucket, "k", [b"x" * (5 * MB), b"y"], IfNoneMatch="*")
    assert status(refused) == (412, "PreconditionFailed")
    second = client.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=bucket, Key="k", Body=b"stale", IfMatch=first["ETag"])
    assert status(refused) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=bucket, Key="gone", Body=b"x", IfMatch=second["ETag"])
    assert status(refused) == (404, "NoSuchKey")
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"


def test_moto_differs_it_accepts_a_wrong_checksum_that_s3_refuses(moto_s3, s3_root):
    """S3 refuses a PutObject or UploadPart whose x-amz-checksum-crc32c is not the body's (400 BadDigest);
    moto stores it. So on moto our checksums prove nothing in transit; the signed sha256 still does at load."""
    client, bucket = moto_s3.client(), bucket_of(s3_root)
    client.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumAlgorithm="CRC32C", ChecksumCRC32C=crc(b"abd"))
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"abc"  # S3 itself: 400 BadDigest


def test_moto_differs_its_multipart_checksums_are_not_of_the_bytes(moto_s3, s3_root):
    """A FULL_OBJECT multipart CRC32C on S3 is the object's CRC32C; moto returns another value. A composite one
    on S3 ends in -N with ChecksumType COMPOSITE; moto's has neither. So head() trusts only single-part objects
    (an ETag without -N) and a multipart blob's end-of-attempt check reads no storage CRC (see the README)."""
    client, bucket = moto_s3.client(), bucket_of(s3_root)
    part, last = b"x" * (5 * MB), b"y" * 100
    upload = client.create_multipart_upload(
        Bucket=bucket, Key="m", ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    etags = [
        client.upload_part(
            Bucket=bucket,
            Key="m",
            UploadId=upload,
            PartNumber=n + 1,
            Body=p,
            ChecksumAlgorithm="CRC32C",
            ChecksumCRC32C=crc(p),
        )["ETag"]
        for n, p in enumerate((part, last))
    ]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="m",
        UploadId=upload,
        ChecksumType="FULL_OBJECT",
        ChecksumCRC32C=crc(part + last),
        MultipartUpload={
            "Parts": [
                {"PartNumber": n + 1, "ETag": e, "ChecksumCRC32C": crc(p)}
                for n, (e, p) in enumerate(zip(etags, (part, last)))
            ]
        },
    )
    meta = client.head_object(Bucket=bucket, Key="m", ChecksumMode="ENABLED")
    assert meta["ChecksumCRC32C"] != crc(part + last)  # S3: equal
    assert meta["ETag"].endswith('-2"')  # what head() goes by, on S3 and on moto


def test_single_part_blobs_carry_the_servers_crc32c_and_multipart_ones_none(s3_root, monkeypatch):
    storage = open_storage(s3_root + "/job")
    small = os.urandom(MB)
    storage.write("small.bin", small)
    assert storage.head("small.bin", 10).crc32c == google_crc32c.value(small)
    monkeypatch.setattr(s3, "PART", 5 * MB)  # multipart from 5 MB (S3's smallest part) instead of 64 MB
    big = os.urandom(11 * MB + 3)
    storage.write_stream("big.bin", io.BytesIO(big), len(big))
    head = storage.head("big.bin", 10)
    assert (head.size, head.crc32c, head.data) == (len(big), None, big[:10])
    with storage.open_read("big.bin") as f:
        assert f.private and f.read() == big  # ranged GETs of 5 MB into a private file


def test_a_multipart_write_if_absent_never_overwrites_and_leaves_no_upload_behind(moto_s3, s3_root, monkeypatch):
    monkeypatch.setattr(s3, "PART", 5 * MB)
    storage = open_storage(s3_root + "/job")
    first, second = b"1" * (11 * MB), b"2" * (11 * MB)
    assert storage.write_stream_if_absent("results/r.pkl", io.BytesIO(first), len(first))
    assert not storage.write_stream_if_absent("results/r.pkl", io.BytesIO(second), len(second))
    assert storage.read("results/r.pkl") == first
    assert not moto_s3.client().list_multipart_uploads(Bucket=bucket_of(s3_root)).get("Uploads")


def test_streams_are_found_by_name_for_the_retry(s3_root, tmp_path):
    data = os.urandom(3 * MB)
    for root in (s3_root, str(tmp_path / "local")):
        storage = open_storage(root + "/job")
        storage.write_stream(key="k", stream=io.BytesIO(data), size=len(data))
        assert storage.write_stream_if_absent("j", size=len(data), stream=io.BytesIO(data))
        assert storage.read("k") == storage.read("j") == data


def test_a_blob_above_the_copy_limit_is_moved_with_upload_part_copy(s3_root):
    storage = open_storage(s3_root + "/job")
    storage.inner.copy_limit, storage.inner.copy_part = 6 * MB, 5 * MB  # S3's: 5 GB, here 6 MB
    data = os.urandom(12 * MB + 1)
    storage.write("results/a.pkl", data)
    storage.move("results/a.pkl", "quarantine/a.pkl")
    assert not storage.exists("results/a.pkl") and storage.read("quarantine/a.pkl") == data
    with pytest.raises(BlobNotFoundError):
        storage.move("results/a.pkl", "quarantine/b.pkl")


def test_a_missing_bucket_is_refused_with_the_fix(moto_s3):
    with pytest.raises(ConfigurationError, match=r"bucket s3://no-such-bucket-kf does not exist: create it"):
        open_storage("s3://no-such-bucket-kf/jobs").check_writable()


def test_an_outage_is_waited_out_with_boto3s_own_retries_off(tmp_path, monkeypatch):
    """The one retry place (RetryingStorage) waits the outage out; a server down longer than the deadline
    raises TransientStorageError. moto keeps its objects in memory: the restarted server is empty."""
    server = MotoS3(str(tmp_path / "s3")).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.url)
    s3_client.forget_clients()
    server.create_bucket("outage")
    try:
        storage = open_storage("s3://outage/job", retry_deadline=60)
        storage.write("before.txt", b"x")
        server.stop()
        with pytest.raises(TransientStorageError):
            open_storage("s3://outage/job", retry_deadline=0.5).read("before.txt")

        def restart():
            server.start()
            server.create_bucket("outage")

        later = threading.Timer(2.0, restart)
        later.start()
        storage.write("during.txt", b"written after the outage")
        later.join()
        assert storage.read("during.txt") == b"written after the outage"
    finally:
        server.stop()
        s3_client.forget_clients()


def test_throttling_conflicts_and_server_errors_are_transient_and_missing_keys_ours():
    def error(code, http):
        return ClientError(
            {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": http}}, "Put"
        )

    for code, http in (
        ("SlowDown", 503),
        ("ConditionalRequestConflict", 409),
        ("InternalError", 500),
        ("ThrottlingException", 400),
        ("TooManyRequests", 429),
    ):
        assert isinstance(s3_wire.translate(error(code, http), "write x"), TransientStorageError), code
    assert isinstance(s3_wire.translate(error("NoSuchKey", 404), "read x"), BlobNotFoundError)
    assert "s3:PutObject" in str(s3_wire.translate(error("AccessDenied", 403), "write x"))


def test_an_endpoint_in_settings_reaches_the_master_and_every_runner(moto_s3, s3_root, tmp_path, monkeypatch):
    """With s3_endpoint_url set and no AWS_ENDPOINT_URL_S3, runners still reach the server (runner_environment)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    s3_client.forget_clients()
    client = Client(storage_root=s3_root, s3_endpoint_url=moto_s3.url, key_dir=str(tmp_path / "keys"), **FAST)
    try:
        assert list(client.map(square, range(3), job_id="endpoint")) == [0, 1, 4]
        storage = open_storage(s3_root + "/endpoint")
        assert storage.runner_environment() == {"KUBEFACE_S3_ENDPOINT_URL": moto_s3.url}
        assert storage.browse_url("status.html") == "%s/%s/jobs/endpoint/status.html" % (
            moto_s3.url,
            bucket_of(s3_root),
        )
    finally:
        from luigi_kubeface import storage as storages

        storages.configure(None)
        s3_client.forget_clients()


def test_on_aws_the_status_page_opens_in_the_s3_console(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    s3_client.forget_clients()
    storage = s3.S3Storage("s3://bucket/jobs/j", environ={})
    assert (
        storage.browse_url("status.html")
        == "https://s3.console.aws.amazon.com/s3/object/bucket?prefix=jobs/j/status.html"
    )
    s3_client.forget_clients()


def test_pods_get_the_endpoint_and_the_key_secret_as_references_never_values():
    settings = Settings(
        storage_root="s3://b/jobs",
        s3_endpoint_url="http://ceph:7480",
        s3_addressing_style="path",
        s3_key_secret="s3-key",
    )
    env = {e["name"]: e for e in s3.S3Storage.pod_access(settings).env}
    assert env["KUBEFACE_S3_ENDPOINT_URL"]["value"] == "http://ceph:7480"
    assert env["KUBEFACE_S3_ADDRESSING_STYLE"]["value"] == "path"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-key",
        "key": "AWS_SECRET_ACCESS_KEY",
        "optional": False,
    }
    assert s3.S3Storage.pod_access(Settings(storage_root="s3://b/jobs")).env == ()  # IRSA: nothing


def test_a_bad_addressing_style_is_refused_with_the_choices():
    with pytest.raises(ConfigurationError, match="s3_addressing_style.*auto, path or virtual"):
        Settings(s3_addressing_style="dns")
