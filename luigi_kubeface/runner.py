"""The task runner: what a pod or a local process executes for one attempt of one element.

    python -m luigi_kubeface.runner <job-url> <element> <attempt>

It downloads the job's function, its shipped code (code_package.py: checked against this image's
packages, then first on sys.path) and the element's input, checks that its Python and cloudpickle
match the master's, runs the function, writes the result once under the job's code version (a
duplicate attempt never overwrites it), and writes the attempt's outcome record and its log
(stdout and stderr) next to it, because Kubernetes loses pod logs: whatever fails, even before
the element runs, the record says why. Exit codes: 0 success, 1 the element raised, 2 the
function, code or input could not be used (retrying will not help), 3 the runner itself failed.

The job's signing key arrives through a pipe (the local backend names its descriptor in
serialization.SECRET_FD_ENV) or the environment (serialization.KEY_ENV, from the Kubernetes
Secret); the runner takes it out before the element runs, verifies the function and inputs with
it and signs the result with it.
"""

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback

import cloudpickle

from . import code_package, naming, serialization
from .errors import BlobNotFoundError, CorruptBlobError, SigningKeyError, VersionMismatchError
from .storage import open_storage

EXIT_OK, EXIT_ELEMENT_ERROR, EXIT_UNUSABLE_INPUT, EXIT_RUNNER_ERROR = 0, 1, 2, 3


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


class UnusableCall(Exception):
    """The function, its code or the input could not be loaded; stage says which (function or input).

    A failure at the function stage hits every element alike, so the engine stops the job at once.
    """

    def __init__(self, error, stage, trace=""):
        super().__init__(str(error))
        self.error, self.stage, self.trace = error, stage, trace


def module_hint(error):
    if isinstance(error, ModuleNotFoundError) and error.name:
        return ("; module %r is neither installed in the image nor shipped with your code. If it is your own "
                "module, add it to [kubeface] code_include (the analysis follows import statements only); if it "
                "is a package, install it in the image (images/Dockerfile)" % error.name)
    return ""


def load_call(storage, element, key, code_dir=None):
    """The job's function and one element's arguments, shared inputs included: (function, args, kwargs, version).

    What every attempt runs, and what `kubeface reproduce` runs in the user's own Python. Every blob's
    signature is checked before it is unpickled; the job's shipped code is checked against this
    environment and put first on sys.path (unpacked into code_dir) before the function is unpickled.
    Raises UnusableCall when the function, its code or the input cannot be used.
    """
    if not key:
        raise UnusableCall(SigningKeyError(
            "the attempt got no signing key in its environment (%s): the backend must hand the job's "
            "key to every attempt (local: a pipe; kubernetes: the job's Secret)" % serialization.KEY_ENV),
            "function")
    job = naming.job_id_from_url(storage.url)

    def verified(blob_key, where, addressed=False, **expect):
        where = "%s (%s/%s)" % (where, storage.url.rstrip("/"), blob_key)
        blob = storage.read(blob_key)
        # Content-addressed: an older signed blob copied over this name must not pass for it.
        if addressed and not hashlib.sha256(blob).hexdigest().startswith(naming.shared_digest(blob_key)):
            raise CorruptBlobError("%s does not hold the content its name addresses: it was replaced in storage "
                                   "and was not unpickled; delete it and rerun to upload it again" % where)
        return serialization.read_header(blob, where, key, dict(expect, job=job)), where

    def unpickle(header_payload, where):
        header, payload = header_payload
        serialization.check_versions(header, where)
        return cloudpickle.loads(payload)

    stage = "function"
    try:
        (header, payload), where = verified(naming.FUNCTION, "the job's function", kind="function")
        if header.get("code"):
            (code_header, archive), _ = verified(header["code"], "the job's code", kind="code")
            for warning in code_package.check_environment(code_header.get("requirements") or {}):
                print("kubeface: %s" % warning, flush=True)
            code_package.install(bytes(archive), code_dir or tempfile.mkdtemp(prefix="kubeface-code-"))
        function = unpickle((header, payload), where)
        stage = "input"
        (input_header, input_payload), where = verified(naming.input_key(element), "the input of element %s"
                                                        % element, kind="input", element=element)
        args, kwargs = unpickle((input_header, input_payload), where)
        for name, shared in input_header.get("shared", {}).items():
            kwargs[name] = unpickle(*verified(shared, "shared input %r" % name, addressed=True,
                                                    kind="shared", name=name))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: BLE001 - whatever stops the call from loading is reported
        raise UnusableCall(error, stage, traceback.format_exc()) from error
    return function, args, kwargs, header.get("code_version", "")


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
    code_dir = tempfile.mkdtemp(prefix="kubeface-code-")
    try:
        function, args, kwargs, version = load_call(storage, element, key, code_dir)
    except UnusableCall as unusable:
        error = unusable.error
        known = isinstance(error, (VersionMismatchError, CorruptBlobError, BlobNotFoundError, SigningKeyError))
        fields = _error_fields(error)
        fields["message"] += "" if known else module_hint(error)
        record.update(outcome="unusable_input", stage=unusable.stage, **fields,
                      traceback="" if known else unusable.trace)
        print("kubeface: the %s could not be loaded: %s: %s" % (unusable.stage, fields["error_type"], fields["message"]),
              file=sys.stderr)
        if not known:
            print(unusable.trace, file=sys.stderr)
        code = EXIT_UNUSABLE_INPUT
    else:
        record["code_version"] = version
        try:
            value = function(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - the element's own failure, reported in full
            if isinstance(error, KeyboardInterrupt):
                raise
            fields = _error_fields(error)
            fields["message"] += module_hint(error)
            record.update(outcome="error", **fields, traceback=traceback.format_exc())
            traceback.print_exc()
            code = EXIT_ELEMENT_ERROR
        else:
            extra = {"element": element, "attempt": attempt, "job": job}
            if version:
                extra["code_version"] = version
            try:
                blob = serialization.dumps(value, "result", extra, key)
            except Exception as error:  # noqa: BLE001 - unpicklable results are user errors
                record.update(outcome="error", error_type="UnpicklableResult",
                              message="the element returned a %s that cannot be pickled (%s): return "
                              "plain data (numbers, lists, dicts, arrays)" % (type(value).__name__, error),
                              traceback=traceback.format_exc())
                code = EXIT_ELEMENT_ERROR
            else:
                won = storage.write_if_absent(naming.result_key(element, version), blob)
                record.update(outcome="success", result_bytes=len(blob), result_written=won)
                if not won:
                    print("result of element %s was already written by another attempt; kept it" % element)
    finally:
        shutil.rmtree(code_dir, ignore_errors=True)
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
    code, record = EXIT_RUNNER_ERROR, None
    try:
        code, record = run_attempt(storage, element, attempt, log_path, key)
    except BaseException as error:  # the runner itself failed (full disk, storage down): say so in the bucket
        record = {"element": element, "attempt": attempt, "host": socket.gethostname(), "outcome": "error",
                  "error_type": "RunnerError", "message": "the task runner failed: %s: %s" % (type(error).__name__, error),
                  "traceback": traceback.format_exc(), "finished": time.time(), **serialization.versions()}
        traceback.print_exc()
        if isinstance(error, KeyboardInterrupt):
            code = 130
    finally:
        try:
            with open(log_path, "rb") as f:
                storage.write(naming.log_key(element, attempt), f.read())
        except Exception as error:  # noqa: BLE001 - the record matters more than the log
            print("kubeface: could not upload the attempt's log: %s" % error, file=sys.stderr)
        try:
            storage.write(naming.attempt_record_key(element, attempt), json.dumps(record, indent=1).encode())
        except Exception as error:  # noqa: BLE001
            print("kubeface: could not write the attempt's record: %s" % error, file=sys.stderr)
            code = EXIT_RUNNER_ERROR
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_path)
    return code


if __name__ == "__main__":
    sys.exit(main())
