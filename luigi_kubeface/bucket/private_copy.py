"""A blob verified while it is copied out of storage: the bytes unpickled are the bytes verified.

Whoever may write the bucket may rewrite a blob's file between two reads of it, so a blob that was
hashed in the bucket and then read there again to unpickle could run anyone's pickle. Instead the
bucket's file is read once, in order, into memory (small blobs) or a private temporary file (mode
0600 in a directory of mode 0700, unlinked at once; 2 GB blobs stay on disk), its header and
digest are checked on the way, and only that copy is unpickled. A storage whose open_read already
returns a private file (GCS downloads into one) marks it `private`: it is not copied again.
"""

import hashlib
import io
import os
import pickle
import shutil
import tempfile

from . import blobs as serialization
from ..errors import CorruptBlobError

IN_MEMORY = 16 << 20  # blobs up to this size are copied into memory, larger ones into a private file
_CHUNK = 8 << 20


class _Memory:
    def __init__(self, size):
        self.data = bytearray(size)

    def write_at(self, view, offset):
        self.data[offset : offset + len(view)] = view

    def read_at(self, view, offset):
        piece = memoryview(self.data)[offset : offset + len(view)]
        view[: len(piece)] = piece
        return len(piece)

    def close(self):
        self.data = bytearray()


class _PrivateFile:
    """An unnamed file in a fresh 0700 directory: nobody else can open it, not even by a guessed name."""

    def __init__(self, file=None, tmpdir=None):
        if file is None:
            directory = tempfile.mkdtemp(prefix="kubeface-blob-", dir=tmpdir)  # mode 0700
            try:
                file = tempfile.TemporaryFile(dir=directory)  # mode 0600, unlinked at once (O_TMPFILE)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        self.file = file

    def write_at(self, view, offset):
        done = 0
        while done < len(view):
            done += os.pwrite(self.file.fileno(), view[done:], offset + done)

    def read_at(self, view, offset):
        return serialization.pread_into(self.file.fileno(), view, offset)

    def close(self):
        self.file.close()


class Copy:
    """A verified blob held privately: header, payload offset, and load() to unpickle it once."""

    def __init__(self, header, offset, store, where, fix):
        self.header, self.offset, self.store, self.where, self.fix = header, offset, store, where, fix

    def load(self):
        """Unpickle the private copy, each out-of-band buffer read straight into the memory it keeps."""
        header, where, fix = self.header, self.where, self.fix
        layout = header.get("buffers") or []
        pickle_size = header.get("pickle_size", header["size"]) if layout else header["size"]
        if (
            not isinstance(pickle_size, int)
            or not all(isinstance(b, list) and len(b) == 2 and isinstance(b[0], int) for b in layout)
            or pickle_size + sum(b[0] for b in layout) != header["size"]
        ):
            raise CorruptBlobError("%s has an inconsistent buffer layout in its header; %s" % (where, fix))

        def buffers():
            position = self.offset + pickle_size
            for length, _ in layout:
                target = bytearray(length)  # READONLY_BUFFER in the stream makes it read-only again
                if self.store.read_at(memoryview(target), position) != length:
                    raise CorruptBlobError("%s ended inside a buffer; %s" % (where, fix))
                position += length
                yield target

        stream = io.BufferedReader(_Window(self.store, self.offset, pickle_size), buffer_size=1 << 16)
        return pickle.load(stream, buffers=buffers())

    def close(self):
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Window(io.RawIOBase):
    """length bytes of a private copy from offset: what the unpickler reads."""

    def __init__(self, store, offset, length):
        super().__init__()
        self.store, self.offset, self.length, self.position = store, offset, length, 0

    def readable(self):
        return True

    def readinto(self, target):
        target = memoryview(target).cast("B")
        n = min(len(target), self.length - self.position)
        if n <= 0:
            return 0
        n = self.store.read_at(target[:n], self.offset + self.position)
        self.position += n
        return n


def private_copy(file, where="blob", key=None, expect=None, fix=serialization.FIX, check=None, tmpdir=None):
    """Read a blob's file once into a private copy, checking it on the way: a Copy (close it).

    The header is checked first (serialization.read_head: signature, place, size), then the payload's
    sha256 as it is copied, then check(header) if given (e.g. a content address), then the versions.
    Nothing is unpickled here, and the file is never read again (a `private` one is kept open by a
    descriptor of its own: the caller may close the file it passed).
    """
    fd = file.fileno()
    total = os.fstat(fd).st_size
    head = bytearray(min(serialization.HEAD_LIMIT, total))
    head = bytes(head[: serialization.pread_into(fd, memoryview(head), 0)])
    header, offset = serialization.read_head(head, total, where, key, expect, fix)
    private = getattr(file, "private", False)
    store = (
        _PrivateFile(os.fdopen(os.dup(fd), "rb"))
        if private
        else _Memory(total)
        if total <= IN_MEMORY
        else _PrivateFile(tmpdir=tmpdir)
    )
    try:
        sha = hashlib.sha256(memoryview(head)[offset:])
        if not private:
            store.write_at(memoryview(head), 0)
        position, buffer = len(head), bytearray(min(_CHUNK, max(total - len(head), 0)))
        while position < total:
            n = serialization.pread_into(fd, memoryview(buffer)[: min(_CHUNK, total - position)], position)
            if n == 0:
                break
            sha.update(memoryview(buffer)[:n])
            if not private:
                store.write_at(memoryview(buffer)[:n], position)
            position += n
        del buffer
        if position != total or sha.hexdigest() != header.get("sha256"):
            raise CorruptBlobError(
                "%s is altered (%d bytes as recorded, but its sha256 differs from the recorded "
                "digest); %s" % (where, header.get("size"), fix)
            )
        if check is not None:
            check(header)
        serialization.check_versions(header, where)
    except BaseException:
        store.close()
        raise
    return Copy(header, offset, store, where, fix)
