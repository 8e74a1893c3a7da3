"""One master run of a job, the same for Client.map and for Luigi's KubefaceJob.

prepare (upload what the runner needs), keep the status page fresh, open the backend, run the
engine, close the backend, write the run's summary (dispatches/<run>.json), write the final page.
"""

import logging
import time

from .. import cost
from ..bucket import layout as naming
from ..backends import open_backend
from .engine import run_job
from ..bucket.records import RunSummary
from .signals import stop_on_signals
from ..views.status_writer import StatusPageWriter

log = logging.getLogger(__name__)


def dispatch(job, settings, on_progress=None, run_id=None, on_page=None, details=None, stop_when=None):
    """Run every unfinished element of job; returns the engine's JobReport (element failures are in it).

    on_progress(progress) is called with the engine's live Progress after the status page has it.
    run_id names the run (its summary's key and the lease's holder); a new one by default.
    on_page(url) is told where the status page is, once the job is prepared.
    details: more for job.json (Luigi: the map task's name, which tells its jobs apart).
    stop_when(): a reason to stop the run early, asked every round (see engine.run_job).
    """
    run_id = run_id or naming.new_run_id()
    started = time.time()
    job.prepare(details=dict(settings.job_details(), **(details or {})))
    page = StatusPageWriter(job)
    log.info("job %s: status page %s", job.id, page.url)
    if on_page:
        on_page(page.url)

    def show(progress):
        page.update(progress)
        if on_progress:
            on_progress(progress)

    backend = open_backend(settings)
    try:
        with stop_on_signals():  # SIGTERM ends the run as Ctrl-C does, cleaned up
            report = run_job(job, backend, settings, on_progress=show, run_id=run_id, stop_when=stop_when)
    except BaseException as error:
        stopped = getattr(error, "report", None)  # Ctrl-C or SIGTERM: the engine's report of the run so far
        if stopped is not None:
            _write_summary(job, RunSummary.of_report(run_id, started, stopped))
        page.close(stopped.progress if stopped is not None else None)
        raise
    finally:
        backend.close()
    job.store.write_run_summary(RunSummary.of_report(run_id, started, report))
    page.close(report.progress)
    total = report.cost.total()
    if total.attempts:
        log.info("job %s: this run's attempts used %s", job.id, cost.describe(total, total.cost > 0))
    return report


def _write_summary(job, summary):
    """Best effort, on the way out: a storage error must not hide what stopped the run."""
    try:
        job.store.write_run_summary(summary)
    except Exception as error:  # noqa: BLE001
        log.warning("job %s: could not write the summary of run %s: %s", job.id, summary.run, error)
