"""Each attempt is a fresh local process running the task runner: the isolation of a pod."""

import os
import select
import signal
import subprocess
import sys
import tempfile
import time

from .. import code_package, runner
from . import AttemptEnd


def _describe_exit(code):
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        return "the process was killed by %s" % name
    return "the process exited with code %d" % code


class LocalBackend:
    def __init__(self, settings):
        self.settings = settings
        self._processes = {}  # attempt -> (Popen, output file path)
        self._pidfds = {}  # attempt -> pidfd (Linux)
        self._dir = tempfile.mkdtemp(prefix="kubeface-local-")
        self._env = dict(os.environ)
        # As in a pod: the runner sees installed packages and luigi-kubeface, and the user's own modules
        # only as the job ships them (code_package.py), so what runs here runs on Kubernetes too.
        ours = os.path.dirname(os.path.dirname(os.path.abspath(runner.__file__)))  # holds luigi_kubeface/
        self._env["PYTHONPATH"] = os.pathsep.join(
            [ours] + [p for p in sys.path if p and p != ours and not code_package.is_user_path(os.path.join(p, "x"))])

    def launch(self, spec):
        output = os.path.join(self._dir, spec.attempt + ".out")
        with open(output, "wb") as out:
            process = subprocess.Popen(
                runner.command(spec.job_url, spec.element, spec.attempt, python=sys.executable),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(self._env, **spec.secret_env),  # the signing key goes in env only, never argv
                cwd=self._dir,  # not the master's folder: its modules must come with the job's code
                start_new_session=True,  # own process group: cancel kills children too
            )
        self._processes[spec.attempt] = (process, output)
        try:  # a descriptor that becomes readable when the process exits, for wait()
            self._pidfds[spec.attempt] = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            pass

    def poll(self):
        ended = []
        for attempt, (process, output) in list(self._processes.items()):
            code = process.poll()
            if code is None:
                continue
            del self._processes[attempt]
            self._close_pidfd(attempt)
            ended.append(AttemptEnd(attempt, code, _describe_exit(code), log_tail=self._tail(output)))
        return ended

    def wait(self, timeout):
        """Sleep until an attempt ends or timeout passes: an element is picked up when its process exits."""
        if self._pidfds and len(self._pidfds) == len(self._processes):
            select.select(list(self._pidfds.values()), [], [], timeout)
        else:
            time.sleep(timeout)

    def _close_pidfd(self, attempt):
        fd = self._pidfds.pop(attempt, None)
        if fd is not None:
            os.close(fd)

    @staticmethod
    def _tail(path, size=4096):
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - size))
                return f.read().decode(errors="replace")
        except OSError:
            return ""
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass

    def cancel(self, attempt):
        entry = self._processes.pop(attempt, None)
        if entry is None:
            return
        process, output = entry
        self._close_pidfd(attempt)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        self._tail(output)

    def close(self):
        for attempt in list(self._processes):
            self.cancel(attempt)
        try:
            os.rmdir(self._dir)
        except OSError:
            pass
