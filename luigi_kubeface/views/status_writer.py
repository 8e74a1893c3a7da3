"""Keeps a running job's status page and live progress fresh in its storage prefix.

status_page.py renders; this module decides when to write, from a background thread that never
slows or fails the job. The job's store writes both keys (status.html, progress.json).
"""

import logging
import threading
import time

from .job_state import JobState
from ..bucket.records import LiveProgress
from .page_head import REFRESH_SECONDS
from .status_page import page_url, render

log = logging.getLogger(__name__)


def write_page(state, progress=None, final=True, max_reads=None):
    """Refresh the view, then write the live progress (while a master runs) and the page."""
    state.refresh(max_reads=max_reads)
    if progress is not None:  # for `kubeface status` and `logs --follow` on other machines
        state.store.write_progress(LiveProgress.of_progress(progress, final))
    state.store.write_status_page(render(state, progress, final=final))


# The page's share of the master's time at most: a large job's page reads thousands of records, and the
# thread that writes it shares the master's process (and GIL) with the engine.
PAGE_SHARE = 0.1


def next_wait(interval, took):
    """Seconds until the next refresh of a running job's page: interval, or longer when writing the page
    took long, so that the page never takes more than PAGE_SHARE of the master's time."""
    return max(interval, took * (1 - PAGE_SHARE) / PAGE_SHARE)


class StatusPageWriter:
    """Keeps a job's page fresh from a background thread, never slowing or failing the job.

    update(progress) hands over the engine's live Progress (cheap, called on every change);
    the page is written at once, then at most every `interval` seconds; close() writes the final one.
    """

    def __init__(self, job, interval=REFRESH_SECONDS, max_reads=2000):
        self.state = JobState(job, max_reads=max_reads, read_live=False)
        self.interval = interval
        self.url = page_url(job)
        self._progress = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one write at a time: the thread's and close()'s
        self._thread = None
        self._warned = False

    def update(self, progress):
        self._progress = progress
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="kubeface-status-page", daemon=True)
            self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            started = time.monotonic()
            self._write(final=False)
            self._stop.wait(next_wait(self.interval, time.monotonic() - started))

    def _write(self, final):
        with self._lock:
            try:
                write_page(self.state, self._progress, final=final)
            except Exception as error:  # noqa: BLE001 - the page is a view: the job goes on without it
                if not self._warned:
                    log.warning("could not write the status page %s: %s", self.url, error)
                    self._warned = True

    def close(self, progress=None):
        """Stop refreshing and write the final page."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        elif progress is None:
            return  # nothing ran: the page of the last run still tells the truth
        if progress is not None:
            self._progress = progress
        self._write(final=True)
