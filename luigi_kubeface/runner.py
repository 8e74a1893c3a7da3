"""The task runner: what a pod or a local process executes for one attempt of one element.

    python -m luigi_kubeface.runner <job-url> <element> <attempt>

It downloads the job's function and the element's input, checks that its Python and cloudpickle
match the master's, runs the function, writes the result once (a duplicate attempt never
overwrites it), and writes the attempt's outcome record and its log (stdout and stderr) next to
it, because Kubernetes loses pod logs. Exit codes: 0 success, 1 the element raised, 2 the input
could not be used (version mismatch, corrupt or unsigned blob, no signing key): retrying that
attempt will not help.

The job's signing key arrives through a pipe (the local backend names its descriptor in
serialization.SECRET_FD_ENV) or the environment (serialization.KEY_ENV, from the Kubernetes
Secret); the runner takes it out before the element runs, verifies the function and inputs with
it and signs the result with it.
"""

import contextlib
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
import traceback

from . import naming, serialization
from .errors import BlobNotFoundError, CorruptBlobError, SigningKeyError, VersionMismatchError
from .storage import open_storage

EXIT_OK, EXIT_ELEMENT_ERROR, EXIT_UNUSABLE_INPUT = 0, 1, 2


def command(job_url, element, attempt, python="python"):
    """The argv that runs one attempt; backends use it so every backend runs the same code path."""
    return [python, "-m", "luigi_kubeface.runner", job_url, element, attempt]


@contextlib.contextmanager
def _tee_output(log_path):
    """Send fd 1 and 2 (this process and its children) to the log file and to the original stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with open(log_path, "ab") as log_file:
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                log_file.write(chunk)
                log_file.flush()
                try:
                    os.write(saved_out, chunk)
                except OSError:
                    pass

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        thread.join(timeout=30)
        os.close(read_end)
        os.close(saved_out)
        os.close(saved_err)


def _error_fields(error):
    if isinstance(error, SystemExit):
        return {"error_type": "SystemExit",
                "message": "the element called sys.exit(%r); return a value or raise an exception instead" % (error.code,)}
    return {"error_type": type(error).__module__ + "." + type(error).__qualname__
            if type(error).__module__ != "builtins" else type(error).__qualname__,
            "message": str(error)}


def signing_key_from_env(environ):
    """Take the job's key out of the environment, or from the pipe it names (children must not inherit it)."""
    text = environ.pop(serialization.KEY_ENV, "")
    fd = environ.pop(serialization.SECRET_FD_ENV, "")
    if fd.isdigit() and int(fd) > 2:
        try:
            with os.fdopen(int(fd), "rb") as pipe:
                text = json.loads(pipe.read()).get(serialization.KEY_ENV, "")
        except (OSError, ValueError, AttributeError):
            text = ""
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
            "key to every attempt (local: a pipe; kubernetes: the job's Secret)" % serialization.KEY_ENV)
    job = naming.job_id_from_url(storage.url)

    def load(blob_key, where, addressed=False, **expect):
        where = "%s (%s/%s)" % (where, storage.url.rstrip("/"), blob_key)
        blob = storage.read(blob_key)
        # Content-addressed: an older signed blob copied over this name must not pass for it.
        if addressed and not hashlib.sha256(blob).hexdigest().startswith(naming.shared_digest(blob_key)):
            raise CorruptBlobError("%s does not hold the content its name addresses: it was replaced in storage "
                                   "and was not unpickled; delete it and rerun to upload it again" % where)
        return serialization.loads_with_header(blob, where, key, dict(expect, job=job))

    function = load(naming.FUNCTION, "the job's function", kind="function")[1]
    header, (args, kwargs) = load(naming.input_key(element), "the input of element %s" % element,
                                  kind="input", element=element)
    for name, shared in header.get("shared", {}).items():
        kwargs[name] = load(shared, "shared input %r" % name, addressed=True, kind="shared", name=name)[1]
    return function, args, kwargs


def run_attempt(storage, element, attempt, log_path, key=None):
    """Run one attempt against a job-scoped storage; returns (exit code, outcome record)."""
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
    fd, log_path = tempfile.mkstemp(prefix="kubeface-attempt-", suffix=".log")  # mode 0600, O_EXCL: no name to plant
    os.close(fd)
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
