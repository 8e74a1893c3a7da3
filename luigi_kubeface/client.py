"""The engine without Luigi: `Client(...).map(fn, items)`, like the original Kubeface."""

import inspect
import logging

from . import storage
from .bucket import layout as naming
from .master.dispatch import dispatch
from .errors import ElementFailedError, JobFailedError
from .job import identity
from .job.definition import Job, elements_from_items
from .bucket.signing import KeyRing
from .views.progress_bar import ProgressBar
from .results import Results
from .settings import Settings
from .views.status_page import page_url

log = logging.getLogger(__name__)


class Client:
    def __init__(self, settings=None, **values):
        self.settings = (settings or Settings()).replace(**values)
        storage.configure(self.settings)

    def map(self, function, items, job_id=None, shared=None, on_progress=None, progress=None, code_version=None):
        """Call function(item) for every item, each in its own process or pod; results in item order.

        Rerunning with the same job_id reuses every result already in storage that the same code made
        (code_version pins that version by hand). The default job id covers the items, the function's
        code and the shared inputs. Shared inputs are uploaded once and passed to every call as keyword
        arguments. progress: show a progress bar (None: when stderr is a terminal, or in a notebook as a
        widget). The job's status page is kept in its storage prefix.
        """
        items = list(items)
        if not items:
            return []  # nothing to compute: no job, nothing in storage
        elements = elements_from_items(items, _argument_name(function))
        job = Job(
            job_id or "map",
            self.settings.storage_root,
            function,
            elements,
            shared,
            retry_deadline=self.settings.storage_retry_deadline,
            keys=KeyRing.from_settings(self.settings),
            settings=self.settings,
            pinned_version=code_version,
        )
        if job_id is None:  # the same items with other code or other shared inputs are another job
            job = _named_by_identity(job, function, elements)
        bars = []  # shown once the job is prepared, as its status page is

        def show(current):
            for bar in bars:
                bar.update(current)
            if on_progress:
                on_progress(current)

        try:
            report = dispatch(
                job,
                self.settings,
                on_progress=show,
                on_page=lambda url: bars.append(ProgressBar(len(elements), job.id, enabled=progress)),
            )
        finally:
            for bar in bars:
                bar.close()
        if report.failures or report.stopped:
            raise job_failure(job, report)
        return Results(job, [e.key for e in elements])


def _argument_name(function):
    """The name of the function's first argument, which names each item's value in results tables."""
    try:
        first = next(iter(inspect.signature(function).parameters.values()), None)
    except (TypeError, ValueError):
        return "item"
    return (
        first.name
        if first is not None and first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD)
        else "item"
    )


def job_failure(job, report):
    """One error that tells the whole story: why it stopped, the distinct errors, one traceback."""
    lines = ["job %s (storage %s) did not finish:" % (job.id, job.url)]
    if report.stopped:
        lines.append("stopped early: %s; %d elements were not run" % (report.stopped, len(report.not_run)))
    lines += ["  " + line for line in report.summary()]
    if report.failures:
        key, failure = next(iter(report.failures.items()))
        label = next((e.label for e in job.elements if e.key == key), key)
        lines.append(str(ElementFailedError(label, failure.error_type, failure.message, failure.traceback)))
    lines.append("Every failed element: `kubeface status %s`, or the status page %s" % (job.url, page_url(job)))
    lines.append("Finished results are kept: fix the cause and rerun to compute only what is missing.")
    return JobFailedError("\n".join(lines))


def _named_by_identity(job, function, elements):
    """The default job id: a digest of the items, the code version and the shared inputs. The id the
    same call had before the code version followed what the function reaches (legacy_code_version)
    is kept when that job exists and this one does not, so its results count after an upgrade."""
    shared_digests = tuple(tuple(d) for d in sorted((n, p.sha256) for n, p in job.shared_pickles().items()))
    keys = tuple(e.key for e in elements)
    prefix = getattr(function, "__name__", "map").strip("<>") or "map"

    def named(version):
        return job.renamed("%s-%s" % (prefix, identity.element_key(((keys, version, shared_digests),), {})[:12]))

    current = named(job.code_version)
    legacy = job.legacy_code_version
    if legacy and legacy != job.code_version and not current.store.storage.exists(naming.JOB_META):
        earlier = named(legacy)
        if earlier.store.storage.exists(naming.JOB_META):
            return earlier
    return current
