"""The mechanics under streamed blobs (blobs.py), standard library and google_crc32c only: crc32c and its
combination (a storage's crc32c of a whole object checked against a header's of the payload), positional
reads into memory, and BlobStream, the rewindable stream an upload reads the envelope from."""

import io
import os


def crc32c(crc, data):
    import google_crc32c

    return google_crc32c.extend(crc, data if isinstance(data, bytes) else bytes(data))  # it takes no memoryview


def _gf2_times(matrix, vector):
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix):
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32c_combine(crc1, crc2, length2):
    """crc32c(a + b) from crc32c(a), crc32c(b) and len(b) (zlib's crc32_combine, Castagnoli polynomial)."""
    if length2 <= 0:
        return crc1
    odd = [0x82F63B78] + [1 << n for n in range(31)]  # the operator of one zero bit
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


def pread_into(fd, view, offset):
    """Fill view from fd at offset (a short read means the file ended early: CorruptBlobError by the caller)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done : done + (256 << 20)]], offset + done)
        if n <= 0:
            break
        done += n
    return done


class BlobStream(io.RawIOBase):
    """A read-only, rewindable stream over parts: memoryviews and (file descriptor, length) spans."""

    def __init__(self, parts):
        super().__init__()
        self.parts = parts
        self.lengths = [p[1] if isinstance(p, tuple) else p.nbytes for p in parts]
        self.size = sum(self.lengths)
        self.position = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.position

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, min(self.size, base + offset))
        return self.position

    def read(self, size=-1):
        """bytes made with one copy. RawIOBase.read fills a scratch bytearray, then copies it: with the GCS
        SDK's 100 MB upload chunks, and the chunk it sent still held, that was 300 MB beside the blob."""
        left = self.size - self.position if size is None or size < 0 else min(size, self.size - self.position)
        pieces, start = [], 0
        for part, length in zip(self.parts, self.lengths):
            if left <= 0:
                break
            end = start + length
            if self.position < end:
                inner = self.position - start
                n = min(length - inner, left)
                if isinstance(part, tuple):
                    got = 0
                    while got < n:  # pread returns at most about 2 GB at once
                        piece = os.pread(part[0], n - got, inner + got)  # bytes: one copy
                        if not piece:
                            break
                        pieces.append(piece)
                        got += len(piece)
                    self.position += got
                    left -= got
                    if got < n:  # the file ended early: the stream does too
                        break
                else:
                    pieces.append(part[inner : inner + n])  # a view: copied once, by the join below
                    self.position += n
                    left -= n
            start = end
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]
        return b"".join(pieces)

    def readinto(self, target):
        target = memoryview(target).cast("B")
        done, start = 0, 0
        for part, length in zip(self.parts, self.lengths):
            if done == len(target):
                break
            end = start + length
            if self.position < end:
                inner = self.position - start
                n = min(length - inner, len(target) - done)
                if isinstance(part, tuple):
                    n = pread_into(part[0], target[done : done + n], inner)
                    if n == 0:
                        break
                else:
                    target[done : done + n] = part[inner : inner + n]
                done += n
                self.position += n
            start = end
        return done
