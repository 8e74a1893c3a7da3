"""The task runner: what a pod or a local process executes for one attempt of one element.

    python -m luigi_kubeface.runner <job-url> <element> <attempt>

It downloads the job's function and the element's input, checks that its Python and cloudpickle
match the master's, runs the function, writes the result once (a duplicate attempt never
overwrites it), and writes the attempt's outcome record and its log (stdout and stderr) next to
it, because Kubernetes loses pod logs. Exit codes: 0 success, 1 the element raised, 2 the input
could not be used (version mismatch, corrupt or unsigned blob, no signing key): retrying that
attempt will not help.

The job's signing key arrives in the environment (serialization.KEY_ENV, put there by the
backend); the runner removes it from the environment before the element runs, verifies the
function and inputs with it and signs the result with it.
"""

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback

from . import naming, serialization
from .errors import BlobNotFoundError, CorruptBlobError, SigningKeyError, VersionMismatchError
from .storage import open_storage

EXIT_OK, EXIT_ELEMENT_ERROR, EXIT_UNUSABLE_INPUT = 0, 1, 2


def attempt_log_path(tmpdir, element, attempt):
    """Where an attempt's log is written before its upload (the local backend uploads it if the runner could not)."""
    return os.path.join(tmpdir, "kubeface-%s-%s.log" % (element, attempt))


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


def _become_subreaper():
    """Orphans of the element's processes become this process's children, so _end_children finds them."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _error_fields(error):
    if isinstance(error, SystemExit):
        return {"error_type": "SystemExit",
                "message": "the element called sys.exit(%r); return a value or raise an exception instead" % (error.code,)}
    return {"error_type": type(error).__module__ + "." + type(error).__qualname__
            if type(error).__module__ != "builtins" else type(error).__qualname__,
            "message": str(error)}


def signing_key_from_env(environ):
    """Take the job's key out of the environment (children of the element must not inherit it)."""
    text = environ.pop(serialization.KEY_ENV, "")
    try:
        return bytes.fromhex(text) if text else None
    except ValueError:
        return None


def load_call(storage, element, key):
    """The job's function and one element's arguments, shared inputs included: (function, args, kwargs).

    What every attempt runs, and what `kubeface reproduce` runs in the user's own Python. Every blob's
    signature is checked before it is unpickled. Raises SigningKeyError, VersionMismatchError,
    CorruptBlobError or BlobNotFoundError when the input is unusable.
    """
    if not key:
        raise SigningKeyError(
            "the attempt got no signing key in its environment (%s): the backend must hand the job's "
            "key to every attempt (local: process environment; kubernetes: the job's Secret)" % serialization.KEY_ENV)
    job = naming.job_id_from_url(storage.url)

    def load(blob_key, where, **expect):
        where = "%s (%s/%s)" % (where, storage.url.rstrip("/"), blob_key)
        return serialization.loads_with_header(storage.read(blob_key), where, key, dict(expect, job=job))

    function = load(naming.FUNCTION, "the job's function", kind="function")[1]
    header, (args, kwargs) = load(naming.input_key(element), "the input of element %s" % element,
                                  kind="input", element=element)
    for name, shared in header.get("shared", {}).items():
        kwargs[name] = load(shared, "shared input %r" % name, kind="shared", name=name)[1]
    return function, args, kwargs


def run_attempt(storage, element, attempt, log_path, key=None):
    """Run one attempt against a job-scoped storage; returns (exit code, outcome record)."""
    _become_subreaper()
    with _tee_output(log_path):
        return execute_attempt(storage, element, attempt, key)


def execute_attempt(storage, element, attempt, key=None):
    """The attempt itself, without the log tee: also what in-process backends call."""
    record = {"element": element, "attempt": attempt, "host": socket.gethostname(),
              "node": os.environ.get("KUBEFACE_NODE_NAME", ""),  # the Kubernetes backend sets it
              "pid": os.getpid(), "started": time.time(), **serialization.versions()}
    code = EXIT_OK
    job = naming.job_id_from_url(storage.url)
    try:
        function, args, kwargs = load_call(storage, element, key)
    except (VersionMismatchError, CorruptBlobError, BlobNotFoundError, SigningKeyError) as error:
        record.update(outcome="unusable_input", **_error_fields(error), traceback="")
        code = EXIT_UNUSABLE_INPUT
    else:
        try:
            value = function(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - the element's own failure, reported in full
            if isinstance(error, KeyboardInterrupt):
                raise
            record.update(outcome="error", **_error_fields(error), traceback=traceback.format_exc())
            traceback.print_exc()
            code = EXIT_ELEMENT_ERROR
        else:
            try:
                blob = serialization.dumps(value, "result", {"element": element, "attempt": attempt, "job": job}, key)
            except Exception as error:  # noqa: BLE001 - unpicklable results are user errors
                record.update(outcome="error", error_type="UnpicklableResult",
                              message="the element returned a %s that cannot be pickled (%s): return "
                              "plain data (numbers, lists, dicts, arrays)" % (type(value).__name__, error),
                              traceback=traceback.format_exc())
                code = EXIT_ELEMENT_ERROR
            else:
                won = storage.write_if_absent(naming.result_key(element), blob)
                record.update(outcome="success", result_bytes=len(blob), result_written=won)
                if not won:
                    print("result of element %s was already written by another attempt; kept it" % element)
    record["finished"] = time.time()
    record["duration"] = record["finished"] - record["started"]
    return code, record


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m luigi_kubeface.runner <job-url> <element> <attempt>", file=sys.stderr)
        return 64
    job_url, element, attempt = argv
    key = signing_key_from_env(os.environ)
    storage = open_storage(job_url)
    log_path = attempt_log_path(os.environ.get("TMPDIR", "/tmp"), element, attempt)
    try:
        code, record = run_attempt(storage, element, attempt, log_path, key)
        with open(log_path, "rb") as f:
            storage.write(naming.log_key(element, attempt), f.read())
        storage.write(naming.attempt_record_key(element, attempt), json.dumps(record, indent=1).encode())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_path)
    return code


if __name__ == "__main__":
    sys.exit(main())
