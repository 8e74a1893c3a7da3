"""The runner's process control on Linux, shared with the backends that start it: the command line, the
attempt's private log file and the tee into it, the children an element leaves behind, dying with the master.

Standard library only: backends/local.py and the Kubernetes pod spec import this module, never the attempt's
logic (attempt.py).
"""

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time


def attempt_log_path(tmpdir, element, attempt):
    """Where an attempt's log is written before its upload (the local backend uploads it if the runner could not)."""
    return os.path.join(tmpdir, "kubeface-%s-%s.log" % (element, attempt))


def open_attempt_log(tmpdir, element, attempt):
    """Create the log file, private (0600) and new: a planted file or link at its name is never followed
    or reused, and the log goes to an unpredictable name (mkstemp) instead."""
    path = attempt_log_path(tmpdir, element, attempt)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        return path
    except FileExistsError:
        fd, path = tempfile.mkstemp(prefix="kubeface-attempt-", suffix=".log", dir=tmpdir)
        os.close(fd)
        return path


def command(job_url, element, attempt, python="python"):
    """The argv that runs one attempt; backends use it so every backend runs the same code path."""
    return [python, "-m", "luigi_kubeface.runner", job_url, element, attempt]


@contextlib.contextmanager
def _tee_output(log_path):
    """Point fd 1 and 2 (this process and its children) straight at the log file, and copy it to the
    original stdout as it grows (kubectl logs, the local backend's capture).

    Written by the kernel, the log keeps every byte whatever ends the process (os._exit, a kill),
    and a child that inherited the descriptors cannot hold the attempt open: when the function
    returns, the element's remaining children are killed (_end_children) and the copy catches up.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    streams = [(stream, stream.line_buffering) for stream in (sys.stdout, sys.stderr) if hasattr(stream, "reconfigure")]
    for stream, _ in streams:  # a line printed is in the log even if os._exit follows
        stream.reconfigure(line_buffering=True)
    stop = threading.Event()

    def copy():
        with open(log_path, "rb") as log_file:
            while True:
                chunk = log_file.read(65536)
                if chunk:
                    try:
                        os.write(saved_out, chunk)
                    except OSError:
                        pass
                elif stop.is_set():
                    return
                else:
                    stop.wait(0.05)

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _end_children()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        stop.set()
        thread.join(timeout=30)
        os.close(saved_out)
        os.close(saved_err)
        for stream, line_buffering in streams:
            stream.reconfigure(line_buffering=line_buffering)


def _processes():
    """(pid, parent pid) of every process this one can see (Linux /proc)."""
    found = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                found.append((int(name), int(fields[1])))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _end_children():
    """Kill what the element started and left running: an attempt ends when its function returns.

    Its children, then their orphans, which come back to this process (their subreaper) as children:
    only the element's descendants, never other members of the runner's process group (a `| tee`).
    """
    me = os.getpid()
    for _ in range(50):  # each round kills one generation
        doomed = [pid for pid, parent in _processes() if parent == me]
        if not doomed:
            return
        for pid in doomed:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.01)


# The local backend hands each runner the read end of a pipe whose write end only the master holds:
# end of file means the master is gone (by any signal), and the attempt goes with it.
MASTER_FD_ENV = "KUBEFACE_MASTER_FD"

# Once the element has returned, neither SIGTERM nor its master's death stops the runner before its
# result and success record are written: a result without its record would be skipped by every rerun
# and its summary lost. FINISH_SECONDS bounds that wait when the storage hangs.
ELEMENT_RETURNED = threading.Event()
RECORD_WRITTEN = threading.Event()
FINISH_SECONDS = 300.0
# A file the local master names, created when the element returns: its cancel then gives the runner
# the long grace to finish, not the short one that stops a running element.
FINISHING_FILE_ENV = "KUBEFACE_FINISHING_FILE"
_FINISHING_FILE = {"path": ""}


def element_returned():
    """The element returned: SIGTERM and the master's death now wait for its result and record."""
    ELEMENT_RETURNED.set()
    if _FINISHING_FILE["path"]:
        with contextlib.suppress(OSError):
            open(_FINISHING_FILE["path"], "w").close()


def _descendants(root):
    """Every process below root (children, their children...), deepest last."""
    children = {}
    for pid, parent in _processes():
        children.setdefault(parent, []).append(pid)
    found, frontier = [], [root]
    while frontier:
        frontier = [c for p in frontier for c in children.get(p, [])]
        found += frontier
    return found


def _die_with_master(fd, finishing_file=""):
    """Block on the master's pipe; at its end, kill what the element started, then this runner's group
    (once a returned element's result and record are written).

    A thread, not a signal handler: it runs while the element computes. An element that holds the
    interpreter for long in C code delays it; the master's next run sweeps what is left (backends/local.py).
    """

    def watch():
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        for pid in reversed(_descendants(os.getpid())):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if ELEMENT_RETURNED.is_set():
            RECORD_WRITTEN.wait(FINISH_SECONDS)
        if os.getpgrp() == os.getpid():  # its own group (the local backend's start_new_session), never a shell's
            with contextlib.suppress(OSError):
                os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(137)

    _FINISHING_FILE["path"] = finishing_file
    with contextlib.suppress(OSError):
        os.set_inheritable(fd, False)

    threading.Thread(target=watch, name="kubeface-master-watch", daemon=True).start()


def _become_subreaper():
    """Orphans of the element's processes become this process's children, so _end_children finds them."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
