"""One contract, every storage in the registry: the local directory, GCS (a real fake-gcs-server) and S3
(moto's server)."""

import threading

import pytest

from luigi_kubeface.errors import BlobNotFoundError, ConfigurationError
from luigi_kubeface.storage import open_storage


def test_write_read_exists_delete(storage):
    assert not storage.exists("a/b.bin")
    storage.write("a/b.bin", b"one")
    assert storage.exists("a/b.bin")
    assert storage.read("a/b.bin") == b"one"
    storage.write("a/b.bin", b"two")
    assert storage.read("a/b.bin") == b"two"
    storage.delete("a/b.bin")
    storage.delete("a/b.bin")  # deleting twice is fine
    assert not storage.exists("a/b.bin")


def test_missing_blob_raises_our_error(storage):
    with pytest.raises(BlobNotFoundError):
        storage.read("nothing/here")


def test_write_if_absent_never_overwrites(storage):
    assert storage.write_if_absent("results/x.pkl", b"first")
    assert not storage.write_if_absent("results/x.pkl", b"second")
    assert storage.read("results/x.pkl") == b"first"


def race(storage, key, write, writers=6):
    """write(i) from several threads at once; the one that won (exactly one must), and what key then holds."""
    outcomes = []
    threads = [threading.Thread(target=lambda i=i: outcomes.append((write(i), i))) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for won, i in outcomes if won]
    assert len(winners) == 1
    assert storage.read(key) == b"writer %d" % winners[0]


def test_concurrent_write_if_absent_has_one_winner(storage):
    race(storage, "results/race.pkl", lambda i: storage.write_if_absent("results/race.pkl", b"writer %d" % i))


def test_list_prefix(storage):
    for key in ["results/a.pkl", "results/b.pkl", "attempts/a/1.json", "resultsx/c.pkl"]:
        storage.write(key, b".")
    assert storage.list("results/") == ["results/a.pkl", "results/b.pkl"]
    assert storage.list("attempts/a/") == ["attempts/a/1.json"]
    assert storage.list("nothing/") == []


def test_large_blob_roundtrip(storage):
    data = bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MB: resumable upload on GCS
    storage.write("big.bin", data)
    assert storage.read("big.bin") == data
    assert not storage.write_if_absent("big.bin", b"small")


@pytest.mark.slow
def test_listing_paginates(storage):
    keys = ["results/%05d.pkl" % i for i in range(1105)]  # more than one GCS page of 1000
    for key in keys:
        storage.write(key, b"")
    assert storage.list("results/") == keys


def test_local_root_whose_parent_is_missing_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        open_storage(str(tmp_path / "missing" / "root")).check_writable()


def test_local_root_not_writable_is_refused(tmp_path):
    import os

    if os.geteuid() == 0:
        target = "/proc/kubeface-root"  # root may write anywhere on disk, but not here
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = str(tmp_path / "ro" / "root")
    with pytest.raises(ConfigurationError, match="cannot be written|does not exist"):
        open_storage(target).check_writable()


def test_missing_bucket_is_refused(fake_gcs):
    with pytest.raises(ConfigurationError, match="bucket gs://no-such-bucket-kf does not exist"):
        open_storage("gs://no-such-bucket-kf/jobs").check_writable()


def test_unknown_scheme_is_refused():
    with pytest.raises(ConfigurationError, match="unknown scheme 'az'.*file://, gs://, s3://"):
        open_storage("az://bucket/prefix")


def test_children_lists_one_level(storage):
    for key in ("one/job.json", "one/results/a.pkl", "two/job.json", "top.txt"):
        storage.write(key, b"x")
    assert storage.children("") == ["one/", "top.txt", "two/"]
    assert storage.children("one/") == ["job.json", "results/"]
    assert storage.children("none/") == []


def test_move_renames_without_reading(storage):
    storage.write("results/a.pkl", b"refused")
    storage.move("results/a.pkl", "quarantine/results/a.pkl.1-x")
    assert not storage.exists("results/a.pkl")
    assert storage.read("quarantine/results/a.pkl.1-x") == b"refused"
    with pytest.raises(BlobNotFoundError):
        storage.move("results/a.pkl", "quarantine/again")


def test_write_if_generation_is_a_compare_and_swap(storage):
    with pytest.raises(BlobNotFoundError):
        storage.read_generation("lease.json")
    assert storage.write_if_generation("lease.json", b"one", None)
    assert not storage.write_if_generation("lease.json", b"again", None)  # None: only when absent
    data, first = storage.read_generation("lease.json")
    assert data == b"one"
    assert storage.write_if_generation("lease.json", b"two", first)
    data, second = storage.read_generation("lease.json")
    assert (data, second != first) == (b"two", True)
    assert not storage.write_if_generation("lease.json", b"stale", first)  # someone wrote since
    assert storage.read("lease.json") == b"two"
    storage.write("lease.json", b"plain")  # a plain write is a new generation too
    assert not storage.write_if_generation("lease.json", b"stale", second)


def test_concurrent_write_if_generation_has_one_winner(storage):
    storage.write("lease.json", b"start")
    _, generation = storage.read_generation("lease.json")
    race(storage, "lease.json", lambda i: storage.write_if_generation("lease.json", b"writer %d" % i, generation))


def test_streams_write_and_read_without_whole_bytes(storage, tmp_path):
    import io
    import os

    data = os.urandom((9 << 20) + 17)  # over 8 MiB: GCS takes the resumable upload
    storage.write_stream("shared/big.pkl", io.BytesIO(data), len(data))
    with storage.open_read("shared/big.pkl") as f:
        assert f.fileno() >= 0  # a real file: the unpickler reads it with pread
        assert f.read() == data
    head = storage.head("shared/big.pkl", 1000)
    assert head.data == data[:1000] and head.size == len(data)
    if head.crc32c is not None:  # GCS computes it itself
        import google_crc32c

        assert head.crc32c == google_crc32c.value(data)
    assert storage.head("shared/big.pkl", 10 << 20).data == data


def test_streamed_write_if_absent_never_overwrites(storage):
    import io

    first, second = b"1" * (9 << 20), b"2" * (9 << 20)  # resumable uploads on GCS
    assert storage.write_stream_if_absent("results/s.pkl", io.BytesIO(first), len(first))
    assert not storage.write_stream_if_absent("results/s.pkl", io.BytesIO(second), len(second))
    assert storage.read("results/s.pkl") == first
    with pytest.raises(BlobNotFoundError):
        storage.open_read("results/none.pkl")
    with pytest.raises(BlobNotFoundError):
        storage.head("results/none.pkl", 10)


def test_a_gcs_listing_asks_for_names_only_and_follows_every_page(gcs_root, monkeypatch):
    """Names alone, in pages as large as the server allows: the partial response must keep its next-page token."""
    from luigi_kubeface.storage import gcs

    storage = open_storage(gcs_root + "/job")
    keys = ["results/%02d.pkl" % i for i in range(7)]
    for key in keys:
        storage.write(key, b"")
    monkeypatch.setattr(gcs, "_LIST_PAGE", 2)  # four pages
    assert storage.list("results/") == keys
