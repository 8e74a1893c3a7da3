"""The runner's signature on its result's summary: what ranks elements is what the attempt computed.

Attempt records are unsigned, yet records(), to_pandas(), `kubeface results` and the status page
pick the best element by the summary in them. So the runner signs the fields that decide
(SIGNED) with its result key (keys.attempt_key), bound to the job, the element, the code version
and the attempt; whoever holds the job's key derives that key again and checks, reading no result.

Records of earlier releases carry no signature. One is counted only under a code version other
than the job's current one: this release signs every record it writes, and it writes records only
under the current version, so an unsigned one there is forged (or, with code_version pinned by
hand, an earlier release's: refused all the same). Standard library only: the runner imports it.
"""

import hashlib
import hmac
import json

from . import signing as keys

FIELD = "summary_hmac"
SIGNED = ("outcome", "code_version", "summary", "result_type", "result_size", "result_written")

VERIFIED = "verified"
EARLIER = "unsigned, of an earlier release"
FORGED = "not signed by this job's key"
NO_KEY = "not verifiable without this job's signing key"


def _message(record, job, element, attempt):
    fields = {name: record.get(name) for name in SIGNED}
    return json.dumps(["luigi-kubeface summary", job, element, attempt, fields], sort_keys=True).encode()


def seal(record, result_key, job, element, attempt):
    """Sign a successful attempt's record (its summary fields set) with the attempt's result key."""
    record[FIELD] = hmac.new(bytes(result_key), _message(record, job, element, attempt), hashlib.sha256).hexdigest()
    return record


def verdict(record, job_key, job, element, attempt, current_version):
    """VERIFIED, EARLIER (counted, said so) or why the record's summary is refused (FORGED, NO_KEY).

    element and attempt come from the record's place in the bucket, never from the record: a
    genuine record copied to another element or attempt does not verify there.
    """
    given = record.get(FIELD)
    if given is None:
        return EARLIER if record.get("code_version", "") != current_version else FORGED
    if job_key is None:
        return NO_KEY
    if not isinstance(given, str):
        return FORGED
    version = record.get("code_version", "")
    signer = keys.attempt_key(bytes(job_key), job, element, version if isinstance(version, str) else "", attempt)
    wanted = hmac.new(signer, _message(record, job, element, attempt), hashlib.sha256).hexdigest()
    return VERIFIED if hmac.compare_digest(given.encode("utf-8", "surrogatepass"), wanted.encode()) else FORGED
