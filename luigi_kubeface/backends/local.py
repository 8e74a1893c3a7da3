"""Each attempt is a fresh local process running the task runner: the isolation of a pod."""

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .. import cost
from ..job.code import discover as code_discover
from ..bucket import attempts, blobs as serialization
from ..runner import process as runner_process
from ..storage import open_storage
from . import AttemptEnd, Backend
from . import local_slots
from .local_slots import Slots, start_time


log = logging.getLogger(__name__)


def _describe_exit(code):
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        return "the process was killed by %s" % name
    return "the process exited with code %d" % code


_DIR_PREFIX = "kubeface-local-"
# Seconds a cancelled runner has before SIGKILL: to record that it stopped, when its element was still
# running (an element in a long C call never sees the SIGTERM); to write the result and success record,
# when its element had returned (local storage: well under a second; a 2 GB result to a bucket: tens).
CANCEL_GRACE = 5.0
FINISH_GRACE = 120.0
FINISHING_FILE = "finishing"  # in the attempt's folder: the runner made it when its element returned


def _group_members(pgid):
    members = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        members.append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    return members


def sweep_stale_dirs(parent=None):
    """Remove what masters killed on this machine left: their runners' process groups, then their directories.

    Each master's directory is named after its pid and lists its runners (pid and start time). A
    runner normally dies with its master (runner/process.py: _die_with_master); this catches the rest, so a
    rerun never computes an element next to a runner still computing it. Returns the directories removed.
    """
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(_DIR_PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(parent, name)
        owner = name[len(_DIR_PREFIX) :].split("-", 1)[0]
        try:
            if os.stat(path, follow_symlinks=False).st_uid != os.getuid():
                continue  # another user's: not ours to judge
            with open(os.path.join(path, "master")) as f:
                master, started = (int(v) for v in f.read().split())
        except (OSError, ValueError):
            # Killed between creating its directory and recording itself: no runner started yet.
            if not owner.isdigit() or start_time(int(owner)) is not None:
                continue  # its master may live
            master, started = int(owner), -1
        if str(master) != owner or start_time(master) == started:
            continue  # its master lives
        try:
            with open(os.path.join(path, "runners")) as f:
                runners = [tuple(int(v) for v in line.split()) for line in f if line.strip()]
        except (OSError, ValueError):
            runners = []
        for pid, runner_started in runners:
            leader = start_time(pid)
            if leader is not None and leader != runner_started:
                continue  # the pid now names another process: its group is not the runner's
            for member in _group_members(pid):  # a group outlives its leader; its id is not reused meanwhile
                try:
                    os.kill(member, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    local_slots.sweep(parent)  # and the slot folders of luigi commands that ended
    if removed:
        log.info("removed %d directories (and their runners) left by local masters that were killed", len(removed))
    return removed


def _has_exited(pid):
    """Whether the child exited, without reaping it (its process group's id stays its own until then)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _secret_pipe(secret_env):
    """A pipe holding the attempt's private environment: never in argv, nor in /proc/<pid>/environ."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe:  # a few hundred bytes: fits the pipe's buffer, never blocks
        pipe.write(json.dumps(secret_env).encode())
    return read_end


class LocalBackend(Backend):
    def __init__(self, settings):
        self.settings = settings
        self._processes = {}  # attempt -> (Popen, output file path)
        self._pidfds = {}  # attempt -> pidfd (Linux)
        self._storage_envs = {}  # job URL -> the storage's runner_environment()
        self._specs = {}  # attempt -> AttemptSpec, to upload the log of an attempt whose runner could not
        # Element processes of every job of this command share the machine's cores (local_slots.py).
        self._slots = Slots(settings.local_max_processes or os.cpu_count() or 1)
        self._waiting = {}  # attempt -> AttemptSpec launched while every slot was held, oldest first
        self._slot_of = {}  # attempt -> the slot its process holds
        self._began = {}  # attempt -> monotonic time its process started (after waiting for a slot)
        self._stopping = {}  # attempt -> (Popen, output path, deadline): cancelled, its runner finishing
        sweep_stale_dirs()
        self._dir = tempfile.mkdtemp(prefix="%s%d-" % (_DIR_PREFIX, os.getpid()))
        with open(os.path.join(self._dir, "master"), "w") as f:
            f.write("%d %d\n" % (os.getpid(), start_time(os.getpid()) or 0))
        # Each runner reads this pipe; only this process holds its write end, so its end (SIGKILL
        # included) is end of file there, and the runner kills its element and itself.
        self._alive_read, self._alive_write = os.pipe()
        self._env = {k: v for k, v in os.environ.items() if k != serialization.KEY_ENV}
        # As in a pod: the runner sees installed packages and luigi-kubeface, and the user's own modules
        # only as the job ships them (job/code/), so what runs here runs on Kubernetes too.
        ours = os.path.abspath(
            os.path.join(os.path.dirname(runner_process.__file__), "..", "..")
        )  # holds luigi_kubeface/
        self._env["PYTHONPATH"] = os.pathsep.join(
            [ours] + [p for p in sys.path if p and p != ours and not code_discover.is_user_path(os.path.join(p, "x"))]
        )

    def _storage_env(self, job_url):
        """What the runner needs to reach the job's storage as this master does (its s3_endpoint_url ...)."""
        if job_url not in self._storage_envs:
            self._storage_envs[job_url] = open_storage(job_url).runner_environment()
        return self._storage_envs[job_url]

    def launch(self, spec):
        self._waiting[spec.attempt] = spec
        self._start_waiting()
        if spec.attempt not in self._waiting:
            self._began.pop(spec.attempt, None)  # it started at launch, as the engine knows

    def _start_waiting(self):
        """Start waiting attempts, oldest first, while a slot is free."""
        while self._waiting:
            slot = self._slots.take()
            if slot is None:
                return
            attempt = next(iter(self._waiting))
            spec = self._waiting.pop(attempt)
            self._slot_of[attempt] = slot
            self._began[attempt] = time.monotonic()
            try:
                self._start(spec)
            except BaseException:
                self._free(attempt)
                raise

    def _free(self, attempt):
        slot = self._slot_of.pop(attempt, None)
        if slot is not None:
            self._slots.give_back(slot)
        self._began.pop(attempt, None)

    def started(self, attempt, launched):
        """None while the attempt waits for a slot: its timeout (and its cost) run from its process's start."""
        if attempt in self._waiting:
            return None
        return self._began.get(attempt, launched)

    def _start(self, spec):
        output = os.path.join(self._dir, spec.attempt + ".out")
        tmpdir = os.path.join(self._dir, spec.attempt)  # the attempt's own TMPDIR, where the runner logs
        os.mkdir(tmpdir, 0o700)
        secret = _secret_pipe(spec.secret_env)
        try:
            with open(output, "wb") as out:
                process = subprocess.Popen(
                    runner_process.command(spec.job_url, spec.element, spec.attempt, python=sys.executable),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=dict(
                        self._env,
                        **self._storage_env(spec.job_url),
                        TMPDIR=tmpdir,
                        **{cost.RESOURCES_ENV: json.dumps(spec.resources)},  # for the runner's record
                        **{
                            serialization.SECRET_FD_ENV: str(secret),
                            runner_process.MASTER_FD_ENV: str(self._alive_read),
                            runner_process.FINISHING_FILE_ENV: os.path.join(tmpdir, FINISHING_FILE),
                        },
                    ),
                    pass_fds=(secret, self._alive_read),  # the signing key: through a pipe, never argv or environ
                    cwd=tmpdir,  # not the master's folder: its modules must come with the job's code
                    start_new_session=True,  # own process group: cancel kills children too
                )
        finally:
            os.close(secret)
        self._processes[spec.attempt] = (process, output)
        self._specs[spec.attempt] = spec
        with open(os.path.join(self._dir, "runners"), "a") as f:  # for the sweep, if this master is killed
            f.write("%d %d\n" % (process.pid, start_time(process.pid) or 0))
        try:  # a descriptor that becomes readable when the process exits, for wait()
            self._pidfds[spec.attempt] = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            pass

    def poll(self):
        self._reap_stopping()
        ended = []
        for attempt, (process, output) in list(self._processes.items()):
            code = process.poll()
            if code is None:
                continue
            del self._processes[attempt]
            self._free(attempt)
            self._close_pidfd(attempt)
            self._keep_log(attempt, output)
            ended.append(
                AttemptEnd(attempt=attempt, exit_code=code, reason=_describe_exit(code), log_tail=self._tail(output))
            )
        self._start_waiting()  # in the slots the ended ones (or another master's) freed
        return ended

    def wait(self, timeout):
        """Sleep until an attempt ends or timeout passes: an element is picked up when its process exits."""
        if self._waiting:  # a slot another master frees wakes nobody: look again soon
            timeout = min(timeout, 0.1)
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
        """SIGTERM the runner, SIGKILL its process group once it is gone or after its grace (CANCEL_GRACE;
        FINISH_GRACE once its element returned).

        A runner whose element is still running stops at once (its record says so); one whose element
        returned finishes writing the result and its success record first: killed in between, the
        result would stay without its record, and every rerun would skip it. Its slot stays held until
        its process is gone; close() waits for every stopping runner.
        """
        if self._waiting.pop(attempt, None) is not None:
            return
        entry = self._processes.pop(attempt, None)
        if entry is None:
            return
        process, output = entry
        self._close_pidfd(attempt)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        self._stopping[attempt] = (process, output, time.monotonic())
        self._reap_stopping()

    def _reap_stopping(self):
        """End the stopping runners that exited or whose grace is over (their leftovers too): freed slots."""
        now = time.monotonic()
        for attempt, (process, output, since) in list(self._stopping.items()):
            finishing = os.path.exists(os.path.join(self._dir, attempt, FINISHING_FILE))
            if now < since + (FINISH_GRACE if finishing else CANCEL_GRACE) and not _has_exited(process.pid):
                continue
            del self._stopping[attempt]
            with contextlib.suppress(ProcessLookupError):  # not reaped yet: the group's id is still its own
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            self._free(attempt)
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
            attempts.keep_log(
                storage, spec.element, attempt, (runner_process.attempt_log_path(tmpdir, spec.element, attempt), output)
            )
        except Exception as error:  # noqa: BLE001 - the log is evidence, not the outcome: the job goes on
            log.warning("could not keep the log of attempt %s: %s", attempt, error)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def close(self):
        self._waiting.clear()
        for attempt in list(self._processes):
            self.cancel(attempt)
        while self._stopping:
            time.sleep(0.02)
            self._reap_stopping()
        for fd in (self._alive_read, self._alive_write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._alive_read = self._alive_write = -1
        shutil.rmtree(self._dir, ignore_errors=True)
