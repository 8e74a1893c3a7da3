"""Each attempt is a fresh local process running the task runner: the isolation of a pod."""

import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .. import naming, runner
from ..storage import open_storage
from . import AttemptEnd


log = logging.getLogger(__name__)


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
        self._specs = {}  # attempt -> AttemptSpec, to upload the log of an attempt whose runner could not
        self._dir = tempfile.mkdtemp(prefix="kubeface-local-")
        self._env = dict(os.environ)
        # The runner must import what the master imported (the pipeline module, often from cwd).
        self._env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd()] + sys.path if p)

    def launch(self, spec):
        output = os.path.join(self._dir, spec.attempt + ".out")
        tmpdir = os.path.join(self._dir, spec.attempt)  # the attempt's own TMPDIR, where the runner logs
        os.mkdir(tmpdir)
        with open(output, "wb") as out:
            process = subprocess.Popen(
                runner.command(spec.job_url, spec.element, spec.attempt, python=sys.executable),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(self._env, TMPDIR=tmpdir, **spec.secret_env),  # the signing key: env only, never argv
                start_new_session=True,  # own process group: cancel kills children too
            )
        self._processes[spec.attempt] = (process, output)
        self._specs[spec.attempt] = spec
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
            self._keep_log(attempt, output)
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
        self._keep_log(attempt, output)
        self._tail(output)

    def _keep_log(self, attempt, output):
        """Upload the attempt's output as its log when the runner did not (killed, os._exit): to its last byte.

        The runner's own log file is complete (its descriptors write straight to it); the captured
        stdout is the fallback when the runner died before it opened one.
        """
        spec = self._specs.pop(attempt, None)
        if spec is None:
            return
        tmpdir = os.path.join(self._dir, attempt)
        try:
            storage = open_storage(spec.job_url, retry_deadline=self.settings.storage_retry_deadline)
            key = naming.log_key(spec.element, attempt)
            if not storage.exists(key):
                for path in (runner.attempt_log_path(tmpdir, spec.element, attempt), output):
                    if os.path.exists(path):
                        with open(path, "rb") as f:
                            storage.write(key, f.read())
                        break
        except Exception as error:  # noqa: BLE001 - the log is evidence, not the outcome: the job goes on
            log.warning("could not keep the log of attempt %s: %s", attempt, error)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def close(self):
        for attempt in list(self._processes):
            self.cancel(attempt)
        try:
            os.rmdir(self._dir)
        except OSError:
            pass
