"""A local directory as the bucket: the embedded default, needing nothing but Python."""

import os
import tempfile

from ..errors import BlobNotFoundError, ConfigurationError, StorageError

_TMP_PREFIX = ".tmp-"


class LocalStorage:
    def __init__(self, url):
        path = url[len("file://") :] if url.startswith("file://") else url
        self.root = os.path.abspath(os.path.expanduser(path))
        self.url = self.root

    def _path(self, key):
        if key.startswith("/") or ".." in key.split("/"):
            raise StorageError("invalid key %r: keys are relative and may not contain '..'" % key)
        return os.path.join(self.root, key)

    def read(self, key):
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise BlobNotFoundError("no blob %s under %s" % (key, self.root)) from None

    def _temp(self, path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def write(self, key, data):
        path = self._path(key)
        os.replace(self._temp(path, data), path)

    def write_if_absent(self, key, data):
        """A hard link is created atomically and fails if the name exists: no overwrite race."""
        path = self._path(key)
        if os.path.exists(path):
            return False
        tmp = self._temp(path, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def exists(self, key):
        return os.path.isfile(self._path(key))

    def list(self, prefix):
        directory, _, start = prefix.rpartition("/")
        base = self._path(directory) if directory else self.root
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for name in filenames:
                key = rel + name
                if not name.startswith(_TMP_PREFIX) and key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def children(self, prefix):
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            entries = os.listdir(base)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n + "/" if os.path.isdir(os.path.join(base, n)) else n
                      for n in entries if not n.startswith(_TMP_PREFIX))

    def delete(self, key):
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

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
            os.makedirs(self.root, exist_ok=True)
            os.unlink(self._temp(os.path.join(self.root, "probe"), b""))
        except OSError as error:
            raise ConfigurationError(
                "storage root %s cannot be written (%s): choose a writable directory with "
                "[kubeface] storage_root or --kubeface-storage-root" % (self.root, error.strerror or error)
            ) from None
