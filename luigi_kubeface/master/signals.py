"""SIGTERM ends a master's run as Ctrl-C does: attempts cancelled and recorded, lease released, run summary
and final progress written. Luigi sends SIGTERM to its forked workers on Ctrl-C, and so do schedulers
(systemd, Kubernetes, batch systems) to a master they stop; its default action skips all of that.

A forked Luigi worker also dies with the `luigi` process that started it (die_with_parent), so a
`kill -9` of that process does not leave the worker launching elements.
"""

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Interrupted(KeyboardInterrupt):
    """The master was told to stop by a signal: the run cleans up as for Ctrl-C, then stops."""

    def __init__(self, signum):
        self.reason = "interrupted: the master received %s" % signal.Signals(signum).name
        super().__init__(self.reason)


def why(stop):
    """Why a KeyboardInterrupt stopped a run, for its records and summary."""
    return getattr(stop, "reason", "") or "interrupted: the master received SIGINT (Ctrl-C)"


@contextlib.contextmanager
def stop_on_signals():
    """While a run lasts (main thread only): the first SIGTERM or SIGINT raises Interrupted. While the run
    cleans up, a SIGTERM is ignored (Luigi sends one after Ctrl-C) and a second Ctrl-C interrupts it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = []

    def handler(signum, frame):
        if not seen:
            seen.append(signum)
            raise Interrupted(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C again: the user does not want to wait for the cleanup
        log.warning("already stopping (%s): cleaning up first", signal.Signals(seen[0]).name)

    previous = {}
    for signum, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        if signal.getsignal(signum) is default:  # respect handlers of the user's and ignored signals
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def die_with_parent():
    """In a forked Luigi worker: get SIGTERM when the `luigi` process that forked it dies (Linux), and
    return a check saying, once that process is gone, why to stop ("" while it lives). None elsewhere."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("could not ask to die with the luigi process: %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as error:  # not Linux: the check below still stops the run
        log.debug("no PR_SET_PDEATHSIG here: %s", error)
    pid = parent.pid

    def parent_gone():
        if os.getppid() == pid:
            return ""
        return "the luigi process that started this worker (pid %d) is gone" % pid

    return parent_gone
