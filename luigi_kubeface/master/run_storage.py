"""RunStorage: the bucket as one run of the engine uses it, every read and write in one place."""

import logging

from ..bucket import layout as naming
from ..bucket.records import Outcome, master_record
from ..errors import BlobNotFoundError, UnreadableRecordError

log = logging.getLogger(__name__)


class RunStorage:
    """The bucket as a run uses it: every read and write the engine makes, in one place.

    The master never trusts an unchecked blob: a result counts once check_result has read its signed head.
    """

    def __init__(self, job):
        self.job, self.store = job, job.store

    def result_versions(self):
        return self.store.result_versions()

    def finished(self, versions=None):
        return self.store.finished(versions)

    def check_result(self, key, versions, whole=False):
        """True when the element's result checks out, False when there is none; CorruptBlobError when refused.
        versions: the run's result_versions(); whole: its payload too, as before superseded results are deleted."""
        try:
            self.store.check_result(key, whole, versions)
            return True
        except BlobNotFoundError:
            return False

    def has_result(self, key, versions):
        return self.store.has_result(key, versions)

    def drop_other_versions(self, key, versions):
        self.store.drop_other_versions(key, versions)

    def write_input(self, element):
        self.store.write_input(element, self.job.shared_keys, self.job.code_version)

    def last_attempt_numbers(self):
        """element -> the number of its last attempt in earlier runs, from one listing of attempts/: numbers
        go on across runs, so each attempt's record, log and "#N" stay its own."""
        return {key: naming.next_attempt_number(ids) - 1 for key, ids in self.store.all_attempts().items()}

    def secret_env(self):
        return self.store.secret_env()

    def record(self, key, attempt):
        """The attempt's record, or None when there is none or it does not parse (the master writes its own)."""
        try:
            return self.store.attempt_record(key, attempt)
        except UnreadableRecordError as error:
            log.warning("%s", error)
            return None

    def write_record(self, key, attempt, record, if_absent=False):
        self.store.write_attempt_record(key, attempt, record, if_absent=if_absent)

    def write_cancelled(self, key, attempt, message, **fields):
        """Best effort, as on the way out: a storage error must not hide what stopped the run."""
        try:
            self.write_record(
                key,
                attempt,
                master_record(key, attempt, Outcome.CANCELLED, "Cancelled", message, **fields),
                if_absent=True,
            )
        except Exception as error:  # noqa: BLE001
            log.warning("could not record the cancellation of attempt %s: %s", attempt, error)
