"""Attempt records (attempts/<element>/<attempt>.json) and logs (logs/<element>/<attempt>.log): their one writer.

The runner writes its record and log here, the master its own account of an attempt whose runner could not
(JobStore.write_attempt_record), the local backend the log of a runner that died before uploading it, and the
simulated backend the records its script plays; every one of them in one JSON format. Readers list and read
them here too (JobStore, JobState and `kubeface` through JobStore). tests/test_one_writer.py checks that no
other module writes these keys.
"""

import json
import os

from . import layout


def record_bytes(record):
    """The one encoding of an attempt record (a dict, or an AttemptRecord)."""
    return json.dumps(dict(record), indent=1).encode()


def write_record(storage, element, attempt, record, if_absent=False):
    """Write an attempt's record; if_absent: an account that never replaces one already there (the master's
    for an attempt it cancelled or lost, the runner's when SIGTERM stopped it). Whether it was written."""
    key = layout.attempt_record_key(element, attempt)
    if if_absent:
        return storage.write_if_absent(key, record_bytes(record))
    storage.write(key, record_bytes(record))
    return True


def write_log(storage, element, attempt, data):
    """Write an attempt's log (its stdout and stderr), replacing one uploaded earlier."""
    storage.write(layout.log_key(element, attempt), data)


def keep_log(storage, element, attempt, paths):
    """Upload the first of paths that exists as the attempt's log, unless its runner uploaded one; whether it did."""
    if storage.exists(layout.log_key(element, attempt)):
        return False
    for path in paths:
        if os.path.exists(path):
            with open(path, "rb") as f:
                write_log(storage, element, attempt, f.read())
            return True
    return False


def read_log(storage, element, attempt):
    """An attempt's log (BlobNotFoundError while it runs, or if it left none)."""
    return storage.read(layout.log_key(element, attempt))


def element_attempts(storage, element):
    """Attempt ids of an element that have a record, oldest first."""
    names = storage.list(layout.attempts_prefix(element))
    return sorted(
        (pair[1] for pair in map(layout.attempt_from_record_key, names) if pair and pair[0] == element),
        key=layout.attempt_order,
    )


def all_attempts(storage):
    """element -> its attempt ids, oldest first, from one listing."""
    found = {}
    for key in storage.list(layout.ATTEMPTS_PREFIX):
        pair = layout.attempt_from_record_key(key)
        if pair:
            found.setdefault(pair[0], []).append(pair[1])
    return {k: sorted(v, key=layout.attempt_order) for k, v in found.items()}
