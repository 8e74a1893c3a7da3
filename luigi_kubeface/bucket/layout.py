"""Every key in a job's storage prefix is built here (element keys themselves: job/identity.py).

Layout of a job under ``<storage-root>/<job-id>/``::

    job.json                       master versions and settings summary (human readable)
    elements.json                  the grid as last dispatched: element keys and labels, in order
    status.html                    the job's status page, refreshed while it runs
    progress.json                  the master's live counts and running attempts, with the page
    function.pkl                   the element function, pickled once per job
    code/<digest>.zip              the user's own modules the function needs, content-addressed
    shared/<name>-<digest>.pkl     shared inputs, uploaded once for all elements
    inputs/<element>.pkl           the arguments of one element
    results/<element>.<version>.pkl  its result for one code version, written once (one listing
                                   answers "what is done"); results/<element>.pkl: written before
                                   code versions existed
    attempts/<element>/<attempt>.json   outcome of each attempt (error, traceback, timing)
    logs/<element>/<attempt>.log        stdout and stderr of each attempt
    dispatches/<run-id>.json       summary of each master run of the job (records.RunSummary)
    luigi/<run-id>.json            the map task showed the run's elements to Luigi (before this key
                                   existed, an "elements_shown" field of the run's summary said so)
    lease.json                     who runs the job now: host, pid, run id, since, last renewal
                                   (written by compare-and-swap only, see lease.py)
    quarantine/<key>.<time>-<rand> blobs refused as truncated, altered or unsigned, kept for a look
"""

import os
import re
import time

from ..errors import ConfigurationError

JOB_META = "job.json"
# The bucket's format. job.json says which one wrote the job (a job without the field: 1, release 0.1.0);
# a release reads every layout up to its own, and refuses a newer one before writing anything.
LAYOUT_VERSION = 1
ELEMENTS = "elements.json"
STATUS_PAGE = "status.html"
PROGRESS = "progress.json"
LEASE = "lease.json"
LOGS_PREFIX = "logs/"
FUNCTION = "function.pkl"
CODE_PREFIX = "code/"
RESULTS_PREFIX = "results/"
ATTEMPTS_PREFIX = "attempts/"
INPUTS_PREFIX = "inputs/"
DISPATCHES_PREFIX = "dispatches/"
LUIGI_PREFIX = "luigi/"
QUARANTINE_PREFIX = "quarantine/"

_KEY_LENGTH = 24  # hex characters of sha256: 96 bits, collision-free at any realistic grid size
KEY_LENGTH = _KEY_LENGTH  # of element keys (job/identity.py), which the keys here embed
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,199}$")


_WRITTEN = re.compile(  # every key a job's prefix holds, as this module builds them
    r"(job\.json|elements\.json|status\.html|progress\.json|lease\.json|function\.pkl"
    r"|shared/[A-Za-z0-9_.-]+-[0-9a-f]{%(n)d}\.pkl|inputs/[0-9a-f]{%(n)d}\.pkl"
    r"|results/[0-9a-f]{%(n)d}(\.[0-9a-f]{16})?\.pkl|code/[0-9a-f]{%(n)d}\.zip"
    r"|attempts/[0-9a-f]{%(n)d}/[0-9A-Za-z-]+\.json|logs/[0-9a-f]{%(n)d}/[0-9A-Za-z-]+\.log"
    r"|dispatches/[0-9A-Za-z-]+\.json|luigi/[0-9A-Za-z-]+\.json|quarantine/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)"
    % {"n": _KEY_LENGTH}
)


def is_job_key(key):
    """Whether luigi-kubeface writes keys like this one in a job's prefix (cleanup deletes only those)."""
    return bool(_WRITTEN.fullmatch(key)) and ".." not in key.split("/")


def is_element_key(text):
    """Exactly what element_key returns: 24 lowercase hex characters."""
    return isinstance(text, str) and bool(re.fullmatch("[0-9a-f]{%d}" % _KEY_LENGTH, text))


def check_job_id(job_id):
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise ConfigurationError(
            "job id %r is not usable as a storage prefix: use 1-200 characters from "
            "letters, digits and _ . = - (starting with a letter or digit)" % (job_id,)
        )
    return job_id


def job_id_from_task_id(task_id):
    """Luigi task ids may hold any character; keep the readable part and its hash."""
    cleaned = re.sub(r"[^A-Za-z0-9_.=-]", "_", task_id).strip("_.=-")
    return check_job_id(cleaned[:200] or "job")


def job_url(storage_root, job_id):
    return storage_root.rstrip("/") + "/" + check_job_id(job_id)


def job_id_from_url(url):
    """The job id is the last part of a job's URL (see job_url)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def input_key(element):
    return INPUTS_PREFIX + element + ".pkl"


def result_key(element, version=""):
    """Where an element's result for one code version lives ("" : a result from before versions)."""
    return RESULTS_PREFIX + element + ("." + version if version else "") + ".pkl"


def result_from_key(key):
    """(element, code version) for a result name found in a listing, None for anything else."""
    if key.startswith(RESULTS_PREFIX) and key.endswith(".pkl"):
        name = key[len(RESULTS_PREFIX) : -len(".pkl")]
        if "/" not in name:
            element, _, version = name.partition(".")
            return element, version
    return None


def code_key(digest):
    return CODE_PREFIX + digest[:_KEY_LENGTH] + ".zip"


def shared_key(name, digest):
    return "shared/%s-%s.pkl" % (re.sub(r"[^A-Za-z0-9_.-]", "_", name), digest[:_KEY_LENGTH])


def shared_digest(key):
    """The content digest a shared input's key addresses (see shared_key): what its bytes must hash to."""
    return key[: -len(".pkl")].rsplit("-", 1)[-1]


def attempts_prefix(element):
    return ATTEMPTS_PREFIX + element + "/"


def attempt_record_key(element, attempt):
    return attempts_prefix(element) + attempt + ".json"


def log_key(element, attempt):
    return LOGS_PREFIX + "%s/%s.log" % (element, attempt)


def dispatch_key(run_id):
    return DISPATCHES_PREFIX + run_id + ".json"


def run_from_dispatch_key(key):
    """The run id of a dispatches/<run>.json key found in a listing, else None."""
    if key.startswith(DISPATCHES_PREFIX) and key.endswith(".json") and "/" not in key[len(DISPATCHES_PREFIX) :]:
        return key[len(DISPATCHES_PREFIX) : -len(".json")]
    return None


def luigi_flag_key(run_id):
    return LUIGI_PREFIX + run_id + ".json"


def quarantine_key(key):
    """Where a refused blob is moved: out of every listing the engine reads, never overwritten."""
    return "%s%s.%d-%s" % (QUARANTINE_PREFIX, key, int(time.time()), os.urandom(3).hex())


def new_attempt_id(number):
    """Attempt ids sort by attempt number (per element, across runs: next_attempt_number), then time;
    the suffix keeps concurrent masters apart.

    48 random bits: thousands of launches a second must not draw the same id twice.
    """
    return "%03d-%d-%s" % (number, int(time.time()), os.urandom(6).hex())


_ATTEMPT_ID = re.compile(r"[0-9]{3,9}-[0-9]{1,12}-(?:[0-9a-f]{6}|[0-9a-f]{12})")  # 6 hex: ids of earlier releases


def is_attempt_id(text):
    """Exactly what new_attempt_id returns: a name planted under attempts/ (markup, say) is no attempt."""
    return isinstance(text, str) and bool(_ATTEMPT_ID.fullmatch(text))


def attempt_number(attempt_id):
    return int(attempt_id.split("-", 1)[0])


def attempt_time(attempt_id):
    """When the attempt was launched (seconds since the epoch), from its id; 0 if the id has none."""
    parts = attempt_id.split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


def attempt_order(attempt_id):
    """Sort key of an element's attempts, oldest first: by number (not as text: 1000 follows 999), then time."""
    return attempt_number(attempt_id), attempt_time(attempt_id), attempt_id


def numbered_attempts(ids):
    """(number, id) of an element's attempts, oldest first: the number each id carries, except where ids
    share one (buckets of earlier releases restarted at 1 on every run), which count on from the one before."""
    numbered, last = [], 0
    for attempt in sorted(ids, key=attempt_order):
        last = max(attempt_number(attempt), last + 1)
        numbered.append((last, attempt))
    return numbered


def next_attempt_number(ids):
    """The number of an element's next attempt: after the highest of those it has (numbered_attempts)."""
    numbered = numbered_attempts(ids)
    return numbered[-1][0] + 1 if numbered else 1


def attempt_from_record_key(key):
    """(element, attempt) for an attempts/<element>/<attempt>.json key found in a listing, else None."""
    parts = key.split("/")
    if (
        len(parts) == 3
        and key.startswith(ATTEMPTS_PREFIX)
        and parts[2].endswith(".json")
        and is_element_key(parts[1])
        and is_attempt_id(parts[2][: -len(".json")])
    ):
        return parts[1], parts[2][: -len(".json")]
    return None


def new_run_id():
    return "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), os.urandom(4).hex())
