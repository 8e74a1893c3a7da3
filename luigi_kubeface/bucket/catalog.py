"""Finding jobs: a job named by its URL or by its id under a storage root, and the jobs under a root.

Reading tools (`kubeface`, notebooks) start here; each job found is opened as a JobStore that reads
what job.json says counts (no job definition is needed to read what a job did).
"""

import os
from collections import namedtuple

from . import layout as naming
from ..errors import BlobNotFoundError, ConfigurationError, JobNotFoundError, KubefaceError, UnreadableRecordError
from .job_store import JobStore
from .records import JobMeta
from ..storage import open_storage


def is_job_url(job_ref):
    """A job's URL or directory (gs://bucket/prefix/job, ./job, /path/job), rather than an id under a root."""
    return "://" in job_ref or "/" in job_ref or job_ref.startswith(".")


def resolve(job_ref, root):
    """(storage root, job id) of a job named by its URL or by its id under root.

    root: a storage root, or a function giving the default one (asked only for an id).
    """
    if is_job_url(job_ref):
        root, _, job_id = job_ref.rstrip("/").rpartition("/")
        if "://" not in job_ref:
            path = os.path.abspath(job_ref.rstrip("/"))
            root, job_id = os.path.dirname(path), os.path.basename(path)
    else:
        root = root() if callable(root) else root
        if not root:
            raise JobNotFoundError(
                "job %r is an id but no storage root is set: pass --storage-root or set "
                "[kubeface] storage_root in luigi.cfg, or give the job's full URL" % job_ref
            )
        root, job_id = (root if "://" in root else os.path.abspath(os.path.expanduser(root))), job_ref
    try:
        naming.check_job_id(job_id)
    except ConfigurationError as error:  # an unusable id is a job that cannot exist
        raise JobNotFoundError("%r does not name a job: %s" % (job_ref, error)) from None
    return root, job_id


def open_job(job_ref, storage_root=None, keys=None):
    """The JobStore of a job id under storage_root, or of a job URL; JobNotFoundError if it has no job.json."""
    root, job_id = resolve(job_ref, storage_root)
    store = JobStore.at(root, job_id, keys=keys, retry_deadline=30.0)
    if not store.storage.exists(naming.JOB_META):
        raise JobNotFoundError(
            "no job %s: %s has no %s. Run `kubeface list --storage-root %s` to see the jobs there"
            % (job_id, store.url, naming.JOB_META, root)
        )
    store.check_layout()
    return store


def last_activity(store, meta):
    """When the job last did something: job.json (each dispatch), its last run, or its live progress.

    A running master rewrites progress.json every few seconds, so a job that runs for days is never
    "older than" a day.
    """
    runs = store.run_ids()
    try:
        last_run = store.run_summary(runs[-1]) if runs else None
    except UnreadableRecordError:
        last_run = None
    live = store.progress()
    latest = meta.updated
    for seen in ((last_run and last_run.finished), (live and live.updated)):
        try:
            latest = max(latest, float(seen or 0))
        except (ValueError, TypeError):  # an altered record: it says nothing of when
            pass
    return latest


JobListing = namedtuple("JobListing", "job_id meta latest")  # meta: a JobMeta; latest: its last activity


def _listing(root, job_id):
    store = JobStore.at(root, job_id, retry_deadline=30.0)
    try:
        meta = store.read_meta()
    except UnreadableRecordError:  # a job all the same: list it, and say what is wrong (cleanup skips it)
        meta = JobMeta(function="? (its %s is not a valid JSON record)" % naming.JOB_META, unreadable=True)
    if meta is None:
        raise BlobNotFoundError("%s has no %s" % (store.url, naming.JOB_META))
    return JobListing(job_id, meta, last_activity(store, meta))


def list_jobs(root, on_skip=None):
    """A JobListing of every job directly under root; links and malformed jobs are skipped (on_skip(why))."""
    storage = open_storage(root, retry_deadline=30.0)
    jobs = []
    for name in storage.children(""):
        if not name.endswith("/"):
            continue  # a blob, or a link (never followed: it may point anywhere)
        try:
            jobs.append(_listing(root, name[:-1]))
        except BlobNotFoundError:
            continue  # not a job: no job.json
        except (ValueError, TypeError, AttributeError, KubefaceError) as error:
            if on_skip:
                on_skip("skipping %s/%s: not a usable job (%s)" % (root.rstrip("/"), name[:-1], error))
    return jobs
