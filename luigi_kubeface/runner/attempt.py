"""The task runner: what a pod or a local process executes for one attempt of one element.

    python -m luigi_kubeface.runner <job-url> <element> <attempt>

It downloads the job's function, its shipped code (job/code/install.py: checked against this image's
packages, then first on sys.path) and the element's input, checks that its Python and cloudpickle
match the master's, runs the function, writes the result once under the job's code version (a
duplicate attempt never overwrites it), and writes the attempt's outcome record and its log
(stdout and stderr) next to it, because Kubernetes loses pod logs: whatever fails, even before
the element runs, the record says why. Exit codes: 0 success, 1 the element raised, 2 the
function, code or input could not be used (retrying will not help), 3 the runner itself failed.

The job's signing key arrives through a pipe (the local backend names its descriptor in
serialization.SECRET_FD_ENV) or the environment (serialization.KEY_ENV, from the Kubernetes
Secret); the runner takes it out before the element runs and verifies the function and inputs
with it. Then, before anything is unpickled, it derives this attempt's own result key
(keys.attempt_key: it signs only a result of this element, code version and attempt), and wipes
the job's key, so that no code the attempt runs can reach the key that signs inputs.

The call's verification and loading are call.py's; this module runs the attempt's steps (_prepare,
_run_element, _write_result) and writes its record and log.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback

from .. import cost
from . import container_init, summary
from .call import Terminated, UnusableCall, _unusable, fetch_call, module_hint, working_folder
from .process import (
    ELEMENT_RETURNED,
    FINISHING_FILE_ENV,
    MASTER_FD_ENV,
    RECORD_WRITTEN,
    _become_subreaper,
    _die_with_master,
    _tee_output,
    element_returned,
    open_attempt_log,
)
from ..bucket import attempts, signing as keys, layout as naming, blobs as serialization, seal as summary_seal
from ..errors import BlobNotFoundError, CorruptBlobError, SigningKeyError, VersionMismatchError
from ..bucket.records import AttemptRecord, Outcome
from ..storage import open_storage

EXIT_OK, EXIT_ELEMENT_ERROR, EXIT_UNUSABLE_INPUT, EXIT_RUNNER_ERROR = 0, 1, 2, 3
EXIT_TERMINATED = 128 + signal.SIGTERM


def _on_sigterm(signum, _frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the record and log still have to be written
    if not ELEMENT_RETURNED.is_set():  # after it returned: the result and record are written first
        raise Terminated(
            "the attempt was stopped by SIGTERM before it finished (its pod was deleted or "
            "evicted, or a master cancelled it)"
        )
    print("kubeface: SIGTERM received after the element returned: finishing its result and record", file=sys.stderr)


def _error_fields(error):
    if isinstance(error, SystemExit):
        return {
            "error_type": "SystemExit",
            "message": "the element called sys.exit(%r); return a value or raise an exception instead" % (error.code,),
        }
    return {
        "error_type": type(error).__module__ + "." + type(error).__qualname__
        if type(error).__module__ != "builtins"
        else type(error).__qualname__,
        "message": str(error),
    }


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
    try:  # a bytearray: _prepare wipes it before anything is unpickled
        return bytearray.fromhex(text) if text else None
    except ValueError:
        return None


def _prepare(storage, element, attempt, key, code_dir):
    """Verify the call, derive this attempt's result key, wipe the job's key, and only then unpickle:
    (function, args, kwargs, code version, result key). Code the input runs cannot reach the job's key."""
    try:
        call = fetch_call(storage, element, key)
        signer = keys.attempt_key(key, call.job, element, call.version, attempt)
    finally:
        keys.forget(key)  # the runner's own copy (a bytearray): zeroed wherever it is referenced
        key = None
    return _unusable(call, lambda: call.load(code_dir)) + (call.version, signer)


def run_attempt(storage, element, attempt, log_path, key=None):
    """Run one attempt against a job-scoped storage; returns (exit code, outcome record).

    The element runs in the unpacked project's root, so relative paths of the files shipped with
    code_include open as they do on the master (run from that root), locally and in pods alike."""
    _become_subreaper()
    with _tee_output(log_path):
        return execute_attempt(storage, element, attempt, key, in_project=True)


def _placement():
    """What the backend gave the attempt, for its record: its memory limit, whether it ran on spot nodes."""
    placement = {}
    if os.environ.get("KUBEFACE_MEMORY_LIMIT"):
        placement["memory_limit"] = os.environ["KUBEFACE_MEMORY_LIMIT"]
    if os.environ.get("KUBEFACE_SPOT"):
        placement["spot"] = os.environ["KUBEFACE_SPOT"] == "true"
    return placement


def execute_attempt(storage, element, attempt, key=None, in_project=False, resources=None):
    """The attempt itself, without the log tee: also what in-process backends call (they keep their
    working folder, in_project=False: it belongs to the whole master process, and pass resources)."""
    record = AttemptRecord.begin(
        element,
        attempt,
        host=socket.gethostname(),
        node=os.environ.get("KUBEFACE_NODE_NAME", ""),  # the Kubernetes backend sets it
        pid=os.getpid(),
        started=time.time(),
        **serialization.versions(),
        **_placement(),
        resources=cost.request_from_env(os.environ) if resources is None else resources,
    )
    code_dir = tempfile.mkdtemp(prefix="kubeface-code-")
    try:
        try:
            function, args, kwargs, version, signer = _prepare(storage, element, attempt, key, code_dir)
            key = None
        except UnusableCall as unusable:
            code = _record_unusable(record, unusable)
        else:
            record["code_version"] = version
            call = (function, args, kwargs)
            code = _run_element(storage, record, call, version, signer, code_dir if in_project else None)
    finally:
        _remove_code(code_dir)
    record["finished"] = time.time()
    record["duration"] = record["finished"] - record["started"]
    return code, record


def _record_unusable(record, unusable):
    """The function, code or input could not be used: recorded with its stage; EXIT_UNUSABLE_INPUT."""
    error = unusable.error
    known = isinstance(error, (VersionMismatchError, CorruptBlobError, BlobNotFoundError, SigningKeyError))
    fields = _error_fields(error)
    fields["message"] += "" if known else module_hint(error)
    record.end(Outcome.UNUSABLE_INPUT, stage=unusable.stage, **fields, traceback="" if known else unusable.trace)
    print(
        "kubeface: the %s could not be loaded: %s: %s" % (unusable.stage, fields["error_type"], fields["message"]),
        file=sys.stderr,
    )
    if not known:
        print(unusable.trace, file=sys.stderr)
    return EXIT_UNUSABLE_INPUT


def _run_element(storage, record, call, version, signer, project_dir):
    """Run the element (in project_dir, when given), then write its result: the attempt's exit code."""
    function, args, kwargs = call
    try:
        with working_folder(project_dir) if project_dir else contextlib.nullcontext():
            value = function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - the element's own failure, reported in full
        if isinstance(error, KeyboardInterrupt):
            raise
        return _record_failure(record, error)  # inside the except: its traceback is the element's
    element_returned()  # from now on SIGTERM and the master's death wait for its result and record
    return _write_result(storage, record, value, version, signer)


def _record_failure(record, error):
    """The element raised, or SIGTERM stopped it (not the element's failure: the infrastructure's)."""
    if isinstance(error, Terminated):
        record.end(Outcome.INTERRUPTED, error_type="Terminated", message=str(error))
        print("kubeface: %s" % error, file=sys.stderr)
        return EXIT_TERMINATED
    fields = _error_fields(error)
    fields["message"] += module_hint(error)
    record.end(Outcome.ERROR, **fields, traceback=traceback.format_exc())
    traceback.print_exc()
    return EXIT_ELEMENT_ERROR


def _write_result(storage, record, value, version, signer):
    """The result, written once under the code version (a duplicate attempt keeps the first), then the
    success record, sealed: EXIT_OK; a result that cannot be pickled is the element's error."""
    element, attempt, job = record["element"], record["attempt"], naming.job_id_from_url(storage.url)
    extra = {"element": element, "attempt": attempt, "job": job, "signer": keys.ATTEMPT_SIGNER}
    if version:
        extra["code_version"] = version
    try:  # streamed: the pickle stream through a temporary file, large buffers straight from the value
        pickled = serialization.Pickled(value)
    except Exception as error:  # noqa: BLE001 - unpicklable results are user errors
        record.end(
            Outcome.ERROR,
            error_type="UnpicklableResult",
            message="the element returned a %s that cannot be pickled (%s): return "
            "plain data (numbers, lists, dicts, arrays)" % (type(value).__name__, error),
            traceback=traceback.format_exc(),
        )
        return EXIT_ELEMENT_ERROR
    with pickled:
        blob = pickled.blob("result", extra, signer)
        won = storage.write_stream_if_absent(naming.result_key(element, version), blob, blob.size)
    record.end(
        Outcome.SUCCESS, result_bytes=blob.size, result_written=won, **summary.describe(value)
    )  # what results tables read
    summary_seal.seal(record, signer, job, element, attempt)  # what ranks elements: signed
    if not won:
        print("result of element %s was already written by another attempt; kept it" % element)
    return EXIT_OK


def _remove_code(code_dir):
    """A process runs one attempt; an in-process backend (simulated) runs thousands: sys.path must not
    grow by one entry each (every import and metadata lookup scans it all)."""
    while code_dir in sys.path:
        sys.path.remove(code_dir)
    sys.path_importer_cache.pop(code_dir, None)  # its finder holds the folder's listing
    shutil.rmtree(code_dir, ignore_errors=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m luigi_kubeface.runner <job-url> <element> <attempt>", file=sys.stderr)
        return 64
    if container_init.is_init():  # PID 1 of a container: an init in front of the attempt
        return container_init.run_as_init(lambda: run_main(argv))
    return run_main(argv)


def run_main(argv):
    """One attempt, from the command line's three arguments to its record and log in the bucket."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    job_url, element, attempt = argv
    master_fd = os.environ.pop(MASTER_FD_ENV, "")
    finishing_file = os.environ.pop(FINISHING_FILE_ENV, "")
    if master_fd.isdigit():
        _die_with_master(int(master_fd), finishing_file)
    key = signing_key_from_env(os.environ)
    storage = open_storage(job_url)
    log_path = open_attempt_log(tempfile.gettempdir(), element, attempt)  # $TMPDIR when it is usable
    code, record = EXIT_RUNNER_ERROR, None
    try:
        code, record = run_attempt(storage, element, attempt, log_path, key)
    except Terminated as stopped:
        record = AttemptRecord.begin(element, attempt, host=socket.gethostname()).end(
            Outcome.INTERRUPTED,
            error_type="Terminated",
            message=str(stopped),
            finished=time.time(),
            **serialization.versions(),
        )
        code = EXIT_TERMINATED
    except BaseException as error:  # the runner itself failed (full disk, storage down): say so in the bucket
        record = AttemptRecord.begin(element, attempt, host=socket.gethostname()).end(
            Outcome.ERROR,
            error_type="RunnerError",
            message="the task runner failed: %s: %s" % (type(error).__name__, error),
            traceback=traceback.format_exc(),
            finished=time.time(),
            **serialization.versions(),
        )
        traceback.print_exc()
        if isinstance(error, KeyboardInterrupt):
            code = 130
    finally:
        try:
            with open(log_path, "rb") as f:
                attempts.write_log(storage, element, attempt, f.read())
        except Exception as error:  # noqa: BLE001 - the record matters more than the log
            print("kubeface: could not upload the attempt's log: %s" % error, file=sys.stderr)
        try:
            # if_absent when SIGTERM stopped it: a master's account of why it stopped the attempt goes first
            attempts.write_record(storage, element, attempt, record, if_absent=code == EXIT_TERMINATED)
        except Exception as error:  # noqa: BLE001
            print("kubeface: could not write the attempt's record: %s" % error, file=sys.stderr)
            code = EXIT_RUNNER_ERROR
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_path)
        RECORD_WRITTEN.set()
    return code


if __name__ == "__main__":
    sys.exit(main())
