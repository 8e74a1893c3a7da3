"""Streamed blobs: pickle protocol 5 with out-of-band buffers, checked before unpickling, old blobs still read."""

import os
import tempfile

import google_crc32c
import numpy
import pytest

from luigi_kubeface.bucket import blobs as serialization
from luigi_kubeface.errors import CorruptBlobError, UntrustedBlobError
from support import Bomb, dumps_blob

KEY = bytes(range(32))
PLACE = {"kind": "result", "job": "j", "element": "e1"}


def written(pickled, kind="result", extra=None, key=KEY):
    """The whole blob in a temporary file, as a storage's open_read gives it."""
    f = tempfile.TemporaryFile()
    stream = pickled.blob(kind, extra or {"job": "j", "element": "e1"}, key)
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        f.write(chunk)
    f.flush()
    return f


def test_crc32c_combine_matches_the_crc_of_the_concatenation():
    for a, b in [(b"", b"x"), (b"header\n", os.urandom(3000)), (os.urandom(7), b"")]:
        assert serialization.crc32c_combine(
            google_crc32c.value(a), google_crc32c.value(b), len(b)
        ) == google_crc32c.value(a + b)


def test_arrays_go_out_of_band_and_come_back_alike():
    value = {
        "a": numpy.arange(1 << 19, dtype=numpy.float64).reshape(512, 1024),
        "b": os.urandom(2 << 20),
        "c": bytearray(b"z" * (2 << 20)),
        "small": numpy.ones(3),
        "f": numpy.asfortranarray(numpy.ones((600, 700))),
    }
    with serialization.Pickled(value) as pickled:
        assert [size for size, _ in pickled.header("result")["buffers"]] == [4 << 20, 600 * 700 * 8]
        assert pickled.pickle_size < 5 << 20  # the bytes stay in the stream, written straight to the file
        with written(pickled) as f:
            header, loaded = serialization.load_stream(f, key=KEY, expect=PLACE)
    assert header["size"] == pickled.size
    assert numpy.array_equal(loaded["a"], value["a"]) and loaded["a"].flags.writeable
    assert numpy.array_equal(loaded["f"], value["f"]) and loaded["f"].flags.f_contiguous
    assert loaded["b"] == value["b"] and loaded["c"] == value["c"] and type(loaded["c"]) is bytearray


def test_blobs_written_before_streaming_are_read_by_the_streaming_path():
    blob = dumps_blob([1, "two", numpy.ones(5)], "result", {"job": "j", "element": "e1"}, KEY)
    with tempfile.TemporaryFile() as f:
        f.write(blob)
        f.flush()
        header, value = serialization.load_stream(f, key=KEY, expect=PLACE)
    assert value[:2] == [1, "two"] and "crc32c" not in header


def test_an_altered_payload_is_refused_by_load_and_by_the_storage_crc(tmp_path):
    marker = tmp_path / "unpickled"
    with serialization.Pickled([numpy.zeros(1 << 18), "x" * 100]) as pickled, written(pickled) as f:
        f.seek(0)
        blob = bytearray(f.read())
    evil = bytes(blob[: -len(b"x" * 50)]) + b"y" * 50  # same size, same signed header, other bytes
    head = evil[: serialization.HEAD_LIMIT]
    header, offset = serialization.read_head(head, len(evil), key=KEY, expect=PLACE)  # size alone passes
    with pytest.raises(CorruptBlobError, match="crc32c"):
        serialization.read_head(head, len(evil), key=KEY, expect=PLACE, storage_crc32c=google_crc32c.value(evil))
    serialization.read_head(head, len(blob), key=KEY, expect=PLACE, storage_crc32c=google_crc32c.value(bytes(blob)))
    with tempfile.TemporaryFile() as f:
        f.write(evil)
        f.flush()
        with pytest.raises(CorruptBlobError, match="sha256 differs"):
            serialization.load_stream(f, key=KEY, expect=PLACE)
    with pytest.raises(CorruptBlobError, match="truncated or altered"):
        serialization.read_head(head, len(evil) - 1, key=KEY, expect=PLACE)
    forged = dumps_blob(Bomb(str(marker)), "result", {"job": "j", "element": "e1"}, os.urandom(32))
    with tempfile.TemporaryFile() as f:
        f.write(forged)
        f.flush()
        with pytest.raises(UntrustedBlobError):
            serialization.load_stream(f, key=KEY, expect=PLACE)
    assert not marker.exists()


def test_a_header_without_its_end_in_the_first_megabyte_is_refused():
    head = serialization.MAGIC + b"{" + b" " * serialization.HEAD_LIMIT
    with pytest.raises(CorruptBlobError, match="no end of header"):
        serialization.read_head(head[: serialization.HEAD_LIMIT], 10 << 20, key=KEY)


def test_blob_stream_reads_the_same_bytes_in_any_chunks_across_parts():
    pickled = serialization.Pickled({"a": numpy.arange(300_000, dtype=numpy.uint8), "b": os.urandom(200_000)})
    with pickled:
        whole = bytes(bytearray(pickled.blob("result").readall()))
        for size in (1, 4096, 99_999, 250_001, len(whole), -1):
            stream, parts = pickled.blob("result"), []
            while True:
                chunk = stream.read(size)
                assert isinstance(chunk, bytes) and (size < 0 or len(chunk) <= size)
                if not chunk:
                    break
                parts.append(chunk)
            assert b"".join(parts) == whole and stream.tell() == len(whole)
        stream = pickled.blob("result")
        stream.seek(123_457)
        assert stream.read(1000) == whole[123_457:124_457]


@pytest.mark.parametrize("kind", ["numpy", "bytes"])
def test_a_chunk_read_for_upload_is_one_allocation_of_its_size(kind):
    """The GCS SDK reads 100 MB chunks; RawIOBase.read allocated each twice (a scratch bytearray, then
    bytes), which put a pod with a 1 GB result over its 1400Mi limit (issue 13)."""
    import tracemalloc

    size, chunk = 64 << 20, 16 << 20
    value = numpy.ones(size, dtype=numpy.uint8) if kind == "numpy" else b"\1" * size  # bytes: in the temp file
    with serialization.Pickled(value) as pickled:
        stream = pickled.blob("result")
        # numpy: the first chunk straddles the header, the pickle stream and the buffer (a view, copied
        # once); bytes: chunks of the temporary file (one straddling the header costs a second copy).
        stream.seek(100 if kind == "numpy" else 100_000)
        tracemalloc.start()
        try:
            for _ in range(3):
                data = stream.read(chunk)
                assert len(data) == chunk
                del data
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 1.25 * chunk, peak
