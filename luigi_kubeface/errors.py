"""Typed errors: every message names what is wrong and how to fix it."""


class KubefaceError(Exception):
    """Base class of every error luigi-kubeface raises on purpose."""


class ConfigurationError(KubefaceError):
    """Settings, grid or function are unusable; raised before anything is launched."""


class VersionMismatchError(ConfigurationError):
    """The runner's Python or cloudpickle differs from the master's, so unpickling is unsafe."""


class StorageError(KubefaceError):
    """A storage operation failed for a reason that retrying will not fix."""


class BlobNotFoundError(StorageError):
    """A blob that should exist does not; raised by every storage, never the SDK's own error."""


class TransientStorageError(StorageError):
    """A storage operation failed for a reason that may go away (outage, throttling)."""


class CorruptBlobError(StorageError):
    """A blob's content does not match the digest recorded with it (truncated or altered)."""


class UnreadableRecordError(StorageError):
    """A JSON record (job.json, an attempt or dispatch record) does not parse: cut short or altered."""


class UntrustedBlobError(CorruptBlobError):
    """A blob's signature does not verify with the job's key (or it claims another place): never unpickled."""


class SigningKeyError(ConfigurationError):
    """The job's signing key is missing or unusable, so results can be neither signed nor trusted."""


class JobNotFoundError(KubefaceError):
    """No job under the given storage prefix (a typo, or another storage root)."""


class ElementNotFoundError(KubefaceError):
    """No element of a job matches what the user named (key, key prefix, label or @index)."""


class BackendError(KubefaceError):
    """The compute backend could not launch or observe attempts."""


class ElementFailedError(KubefaceError):
    """One element failed for good; carries the remote exception and traceback."""

    def __init__(self, label, error_type, message, remote_traceback=""):
        from .terminal import strip_controls  # the record it comes from is unsigned: Luigi prints this

        label, error_type, message, remote_traceback = map(
            strip_controls, (label, error_type, message, remote_traceback)
        )
        self.label = label
        self.error_type = error_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
        text = "element %s failed: %s: %s" % (label, error_type, message)
        if remote_traceback:
            text += "\n\nRemote traceback:\n" + remote_traceback.rstrip()
        super().__init__(text)


class JobFailedError(KubefaceError):
    """The job stopped (failure budget, fatal configuration error) or ended with failed elements."""


class EnvironmentMismatchError(VersionMismatchError):
    """The image lacks, or has another version of, a distribution the shipped code imports."""


class UnsafePathError(UntrustedBlobError):
    """A local storage path is or passes through a symbolic link: never followed, so never unpickled or written."""


class JobRunningError(KubefaceError):
    """A master holds the job's lease: what would disturb it is refused."""


def check_ranges(settings, checks):
    """checks: (setting, ok, what it must be); the first one not ok is refused, naming what it must be."""
    for name, ok, expected in checks:
        if not ok:
            raise ConfigurationError(
                "[kubeface] %s = %r is out of range: it must be %s" % (name, getattr(settings, name), expected)
            )
