"""A local directory as the bucket: the embedded default, needing nothing but Python.

Whoever may write the directory may plant symbolic links in it; following one would read the
master's key file into the bucket or write outside the root. So every path is walked one
component at a time from the root with O_NOFOLLOW (openat-style, no race with a link swapped
in between), and a link anywhere below the root is refused (UnsafePathError), never followed.
"""

import errno
import fcntl
import os
import secrets
import shutil
import socket
import stat
import time

from ..errors import BlobNotFoundError, ConfigurationError, StorageError, UnsafePathError
from . import Head, PodAccess

_TMP_PREFIX = ".tmp-"
_HOST = socket.gethostname().replace("-", "_")  # in temporary names: whose writer (host, pid) may be judged dead


def _writer_died(name):
    """A temporary file whose writer, a process of this host, is gone (killed mid-write): nobody will finish it."""
    try:
        host, pid, _ = name[len(_TMP_PREFIX) :].rsplit("-", 2)
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return host == _HOST
    except (ValueError, OSError):
        pass
    return False


_COPY_CHUNK = 8 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalStorage:
    remote = False  # a directory of this machine: pods elsewhere cannot reach it
    checksum = None

    def __init__(self, url, settings=None):
        path = url[len("file://") :] if url.startswith("file://") else url
        self.root = os.path.abspath(os.path.expanduser(path))
        self.url = self.root

    def browse_url(self, key):
        return "file://" + os.path.join(self.root, key)

    @staticmethod
    def pod_access(settings):
        return PodAccess()

    def runner_environment(self):
        return {}

    def container_hint(self):
        return ""

    @staticmethod
    def _parts(key, blob=True):
        parts = key.strip("/").split("/") if (key.strip("/") or blob) else []
        if key.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
            raise StorageError("invalid key %r: keys are relative, without '.', '..' or empty parts" % key)
        return parts

    def _unsafe(self, parts):
        return UnsafePathError(
            "%s is a symbolic link (or not a plain file): luigi-kubeface never follows links in a storage "
            "root, so it was neither read nor written; remove it (someone with write access to %s put it "
            "there) and rerun" % (os.path.join(self.root, *parts), self.root)
        )

    def _open_root(self):
        """The root's own last component is no link either: a job's prefix swapped for one must not be followed."""
        parent, name = os.path.split(self.root)
        if not name:
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return os.open(name, _DIR, dir_fd=parent_fd)
        except OSError as error:  # Linux says ENOTDIR for a link opened with O_DIRECTORY | O_NOFOLLOW
            if error.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(self.root):
                raise UnsafePathError(
                    "%s is a symbolic link: luigi-kubeface never follows links in storage, so it was neither "
                    "read nor written; if you configured it, set storage_root to the link's target (%s), "
                    "otherwise remove it" % (self.root, os.path.realpath(self.root))
                ) from None
            raise
        finally:
            os.close(parent_fd)

    def _open_dir(self, parts, create=False):
        """A descriptor of root/parts, opened one component at a time without following any link."""
        if create:
            os.makedirs(self.root, exist_ok=True)
        fd = self._open_root()
        for i, name in enumerate(parts):
            try:
                try:
                    child = os.open(name, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(name, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(name, _DIR, dir_fd=fd)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(
                    os.path.join(self.root, *parts[: i + 1])
                ):
                    raise self._unsafe(parts[: i + 1]) from None
                raise
            os.close(fd)
            fd = child
        return fd

    def _in_dir(self, key, create=False):
        """(descriptor of the key's directory, the key's last component)."""
        parts = self._parts(key)
        return self._open_dir(parts[:-1], create), parts[-1]

    def _open_file(self, key):
        """The blob opened for reading, never through a link, a FIFO or a device."""
        try:
            directory, name = self._in_dir(key)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFoundError("no blob %s under %s" % (key, self.root)) from None
        try:  # O_NONBLOCK: a FIFO planted here must not hang the reader
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
        except FileNotFoundError:
            raise BlobNotFoundError("no blob %s under %s" % (key, self.root)) from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise self._unsafe(self._parts(key)) from None
            raise
        finally:
            os.close(directory)
        f = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            f.close()
            raise self._unsafe(self._parts(key))
        return f

    def read(self, key):
        with self._open_file(key) as f:
            return f.read()

    def open_read(self, key):
        return self._open_file(key)

    def head(self, key, limit):
        with self._open_file(key) as f:
            return Head(f.read(limit), os.fstat(f.fileno()).st_size, None)

    def _temp(self, directory, data):
        """A new file (mode 0600, O_EXCL) in the directory holding data (bytes, or a stream read in
        chunks), flushed to disk: its name."""
        name = "%s%s-%d-%s" % (_TMP_PREFIX, _HOST, os.getpid(), secrets.token_hex(8))
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    f.write(data)
                else:
                    shutil.copyfileobj(data, f, _COPY_CHUNK)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(name, dir_fd=directory)
            raise
        return name

    def write(self, key, data):
        directory, name = self._in_dir(key, create=True)
        try:  # rename replaces a link planted at the name; it never writes through it
            os.replace(self._temp(directory, data), name, src_dir_fd=directory, dst_dir_fd=directory)
        finally:
            os.close(directory)

    def write_stream(self, key, stream, size):
        self.write(key, stream)

    def write_stream_if_absent(self, key, stream, size):
        return self.write_if_absent(key, stream)

    def write_if_absent(self, key, data):
        """A hard link is created atomically and fails if the name exists: no overwrite race."""
        directory, name = self._in_dir(key, create=True)
        try:
            if self._lstat(directory, name) is not None:
                return False
            tmp = self._temp(directory, data)
            try:
                os.link(tmp, name, src_dir_fd=directory, dst_dir_fd=directory, follow_symlinks=False)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp, dir_fd=directory)
        finally:
            os.close(directory)

    @staticmethod
    def _generation(found):
        """Each write is a new file (rename of a fresh temporary): its inode and change time name the version."""
        return "%d.%d" % (found.st_ino, found.st_ctime_ns)

    def read_generation(self, key):
        """The data and generation of one file, read through one descriptor: no lock, no window between them."""
        with self._open_file(key) as f:
            return f.read(), self._generation(os.fstat(f.fileno()))

    lock_wait = 10.0  # seconds a compare-and-swap waits for the lock before it gives up (never unbounded)

    def _lock(self, fd, key):
        """flock the blob being replaced, polling up to lock_wait: a holder that never lets go is an error."""
        deadline = time.monotonic() + self.lock_wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError(
                        "%s stayed locked by another process for %.0fs: a compare-and-swap holds it for "
                        "milliseconds, so something else holds it (fuser %s shows who); stop it and rerun"
                        % (os.path.join(self.root, key), self.lock_wait, os.path.join(self.root, key))
                    ) from None
                time.sleep(0.05)

    def write_if_generation(self, key, data, generation):
        """Compare and rename under an exclusive lock on the file being replaced.

        Each write is a new file (mode 0600), so only its owner can open, hence lock, it: unlike the
        blob's directory (0755), another local user cannot hold the lock. Two writers expecting the
        same generation lock the same file; the second then finds another file at the name, and fails.
        """
        if generation is None:
            return self.write_if_absent(key, data)
        try:
            current = self._open_file(key)
        except BlobNotFoundError:
            return False
        directory, name = self._in_dir(key, create=True)
        try:
            self._lock(current.fileno(), key)
            found = self._lstat(directory, name)
            mine = os.fstat(current.fileno())
            if (
                found is None
                or (found.st_ino, found.st_dev) != (mine.st_ino, mine.st_dev)
                or self._generation(mine) != generation
            ):
                return False
            os.replace(self._temp(directory, data), name, src_dir_fd=directory, dst_dir_fd=directory)
            return True
        finally:
            os.close(directory)
            current.close()  # closing releases the lock

    @staticmethod
    def _lstat(directory, name):
        try:
            return os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, key):
        """A blob, or a link planted in its place (which read refuses and move can put aside)."""
        try:
            directory, name = self._in_dir(key)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            found = self._lstat(directory, name)
        finally:
            os.close(directory)
        return found is not None and not stat.S_ISDIR(found.st_mode)

    def _entries(self, directory):
        """(name, is a real directory) of every entry but temporary files; links are never directories.

        A temporary file whose writer was killed is removed on the way: a 2 GB result cut short
        would otherwise stay on disk for good."""
        found = []
        with os.scandir(directory) as entries:
            for e in entries:
                if not e.name.startswith(_TMP_PREFIX):
                    found.append((e.name, e.is_dir(follow_symlinks=False)))
                elif _writer_died(e.name):
                    try:
                        os.unlink(e.name, dir_fd=directory)
                    except OSError:
                        pass
        return found

    def _walk(self, fd, rel, keys):
        for name, is_dir in self._entries(fd):
            if not is_dir:
                keys.append(rel + name)
                continue
            try:
                child = os.open(name, _DIR, dir_fd=fd)
            except OSError:
                continue  # swapped for a link or removed meanwhile: not followed
            try:
                self._walk(child, rel + name + "/", keys)
            finally:
                os.close(child)

    def list(self, prefix):
        directory = prefix.rpartition("/")[0]
        try:
            fd = self._open_dir(self._parts(directory, blob=False))
        except (FileNotFoundError, NotADirectoryError):
            return []
        keys = []
        try:
            self._walk(fd, directory + "/" if directory else "", keys)
        finally:
            os.close(fd)
        return sorted(k for k in keys if k.startswith(prefix))

    def children(self, prefix):
        try:
            fd = self._open_dir(self._parts(prefix, blob=False))
        except (FileNotFoundError, NotADirectoryError):
            return []
        try:
            return sorted(name + "/" if is_dir else name for name, is_dir in self._entries(fd))
        finally:
            os.close(fd)

    def delete(self, key):
        """Removes the blob, or a link in its place (the link, never its target)."""
        try:
            directory, name = self._in_dir(key)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            os.unlink(name, dir_fd=directory)
        except FileNotFoundError:
            pass
        finally:
            os.close(directory)

    def move(self, key, new_key):
        """Rename within the root: a refused blob (or a link) is put aside without reading its bytes."""
        try:
            source, name = self._in_dir(key)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFoundError("no blob %s under %s" % (key, self.root)) from None
        try:
            target, new_name = self._in_dir(new_key, create=True)
            try:
                os.rename(name, new_name, src_dir_fd=source, dst_dir_fd=target)
            except FileNotFoundError:
                raise BlobNotFoundError("no blob %s under %s" % (key, self.root)) from None
            finally:
                os.close(target)
        finally:
            os.close(source)

    def check_writable(self):
        """The root is created like `mkdir` would (its parent must exist), then probed with a write."""
        parent = os.path.dirname(self.root)
        if not os.path.isdir(self.root) and not os.path.isdir(parent):
            raise ConfigurationError(
                "storage root %s does not exist and neither does its parent %s: create it "
                "(mkdir -p %s) or point [kubeface] storage_root / --kubeface-storage-root elsewhere"
                % (self.root, parent, self.root)
            )
        try:
            directory = self._open_dir([], create=True)
            try:
                os.unlink(self._temp(directory, b""), dir_fd=directory)
            finally:
                os.close(directory)
        except OSError as error:
            raise ConfigurationError(
                "storage root %s cannot be written (%s): choose a writable directory with "
                "[kubeface] storage_root or --kubeface-storage-root" % (self.root, error.strerror or error)
            ) from None
