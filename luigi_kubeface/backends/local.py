"""Each attempt is a fresh local process running the task runner: the isolation of a pod."""

import os
import signal
import subprocess
import sys
import tempfile

from .. import runner
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
        self._dir = tempfile.mkdtemp(prefix="kubeface-local-")
        self._env = dict(os.environ)
        # The runner must import what the master imported (the pipeline module, often from cwd).
        self._env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd()] + sys.path if p)

    def launch(self, spec):
        output = os.path.join(self._dir, spec.attempt + ".out")
        with open(output, "wb") as out:
            process = subprocess.Popen(
                runner.command(spec.job_url, spec.element, spec.attempt, python=sys.executable),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(self._env, **spec.secret_env),  # the signing key goes in env only, never argv
                start_new_session=True,  # own process group: cancel kills children too
            )
        self._processes[spec.attempt] = (process, output)

    def poll(self):
        ended = []
        for attempt, (process, output) in list(self._processes.items()):
            code = process.poll()
            if code is None:
                continue
            del self._processes[attempt]
            ended.append(AttemptEnd(attempt, code, _describe_exit(code), log_tail=self._tail(output)))
        return ended

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
