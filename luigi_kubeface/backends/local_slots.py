"""One cap on element processes across every job of one `luigi` command: slots as locked files.

Luigi's forked workers (`--workers 4`) each run their own map task's master, each with its own
max_in_flight; on one machine their processes share its cores. The masters of one command share
a folder of `local_max_processes` slot files; a runner starts only while its master holds an
exclusive lock on one (flock, released by the kernel when the master closes it or dies), so the
command never runs more element processes than that, whichever jobs they belong to.

The folder is the command's: named after the `luigi` process (a forked worker's parent) or, for
Client.map, after this process, with its start time, so a reused pid never shares stale slots.
"""

import fcntl
import multiprocessing
import os
import shutil
import tempfile

_PREFIX = "kubeface-slots-"


def start_time(pid):
    """The process's start time in clock ticks since boot (/proc/<pid>/stat), or None if it is gone: with the
    pid, it names one process for good (a pid alone is reused)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def command_pid():
    """The pid of the command whose jobs share the slots: the `luigi` process of a forked worker, else ours."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getpid()


def sweep(parent):
    """Remove the slot folders of commands that ended (a few empty files each): local.sweep_stale_dirs calls it."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(_PREFIX)]
    except OSError:
        return
    for name in names:
        try:
            pid, started = (int(v) for v in name[len(_PREFIX) :].split("-"))
        except ValueError:
            continue
        path = os.path.join(parent, name)
        try:
            if os.stat(path, follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        if start_time(pid) != started:
            shutil.rmtree(path, ignore_errors=True)


class Slots:
    """count slot files shared by the masters of one command; take() locks a free one, give_back() frees it."""

    def __init__(self, count, pid=None, parent=None):
        self.count = count
        parent = parent or tempfile.gettempdir()
        pid = pid or command_pid()
        self.folder = os.path.join(parent, "%s%d-%d" % (_PREFIX, pid, start_time(pid) or 0))
        os.makedirs(self.folder, mode=0o700, exist_ok=True)

    def take(self):
        """A locked slot's descriptor, or None when all count are held (by this master or another)."""
        for number in range(self.count):
            fd = os.open(os.path.join(self.folder, "slot-%d" % number), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    @staticmethod
    def give_back(fd):
        os.close(fd)  # the lock goes with the descriptor
