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

import cloudpickle

from .. import cost
from ..job.code import install as code_install
from . import container_init, summary
from .process import MASTER_FD_ENV, _become_subreaper, _die_with_master, _tee_output, open_attempt_log
from ..bucket import attempts, signing as keys, layout as naming, blobs as serialization, seal as summary_seal
from ..bucket.private_copy import private_copy
from ..errors import BlobNotFoundError, CorruptBlobError, SigningKeyError, VersionMismatchError
from ..bucket.records import AttemptRecord, Outcome
from ..storage import open_storage

EXIT_OK, EXIT_ELEMENT_ERROR, EXIT_UNUSABLE_INPUT, EXIT_RUNNER_ERROR = 0, 1, 2, 3
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM reached the runner (its pod is deleted or evicted, or a master cancelled it): the attempt
    stops where it is, writes no result, and records that the infrastructure stopped it."""


# Until the element's function returns, SIGTERM stops the attempt; after, it lets the runner finish writing the
# result and its success record (seconds, within the pods' grace period): a written result is never recorded
# as interrupted.
_SIGTERM_STOPS = {"attempt": True}


def _on_sigterm(signum, _frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the record and log still have to be written
    if _SIGTERM_STOPS["attempt"]:
        raise Terminated("the attempt was stopped by SIGTERM before it finished (its pod was deleted or "
                         "evicted, or a master cancelled it)")
    print("kubeface: SIGTERM received after the element returned: finishing its result and record", file=sys.stderr)


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
    try:  # a bytearray: _prepare wipes it before anything is unpickled
        return bytearray.fromhex(text) if text else None
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
    """What to do about a module or a data file the attempt lacks: both ship only as the job ships them."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        return ("; module %r is neither installed in the image nor shipped with your code. If it is your own "
                "module, add it to [kubeface] code_include (the analysis follows import statements only); if it "
                "is a package, install it in the image (images/Dockerfile)" % error.name)
    if isinstance(error, FileNotFoundError):
        return _file_hint(error.filename)
    return ""


def _file_hint(filename):
    """Elements run in the shipped project's root (run_attempt), where only the files code_include names are."""
    name = os.fsdecode(filename) if isinstance(filename, (str, bytes)) else ""
    if name and os.path.isabs(name):
        return ("; %r is a path of one machine, not of the attempt's: ship the file with [kubeface] code_include "
                "and open it by its path relative to your project's root (elements run there), or pass its "
                "content as a shared input" % name)
    what = "%r is not in the element's working folder" % name if name else "a file is missing"
    return ("; %s, the root of your project as the job ships it (where your pipeline module is imported from): "
            "data files ship only when named in [kubeface] code_include (e.g. code_include = data/proteins.txt, "
            "relative to that root)" % what)


class VerifiedCall:
    """The function, code, input and shared inputs of one element, every one verified and held privately
    (bytes in memory, or private copies: private_copy.py), nothing unpickled yet."""

    def __init__(self, storage, element, key):
        self.storage, self.element, self.key = storage, element, key
        self.job = naming.job_id_from_url(storage.url)
        self.shared = {}  # name -> private_copy.Copy
        self.input = None

    def where(self, what, blob_key):
        return "%s (%s/%s)" % (what, self.storage.url.rstrip("/"), blob_key)

    def verified(self, blob_key, what, **expect):
        """A small blob, read once into memory and verified: (header, payload)."""
        return serialization.read_header(self.storage.read(blob_key), self.where(what, blob_key), self.key,
                                         dict(expect, job=self.job))

    def copied(self, blob_key, what, addressed=False, **expect):
        """Inputs and shared inputs: copied once out of storage, checked whole on the way (private_copy)."""
        where = self.where(what, blob_key)

        def address(header):  # content-addressed: an older signed blob copied over this name must not pass for it
            if addressed and not serialization.header_digest(header).startswith(naming.shared_digest(blob_key)):
                raise CorruptBlobError("%s does not hold the content its name addresses: it was replaced in storage "
                                       "and was not unpickled; delete it and rerun to upload it again" % where)

        with self.storage.open_read(blob_key) as f:
            return private_copy(f, where, self.key, dict(expect, job=self.job), check=address)

    def fetch(self):
        """Verify everything the call needs with the job's key (the "function" stage, then "input")."""
        self.stage = "function"
        self.function_where = self.where("the job's function", naming.FUNCTION)
        self.header, self.payload = self.verified(naming.FUNCTION, "the job's function", kind="function")
        serialization.check_versions(self.header, self.function_where)  # before anything else: the likeliest cause
        self.code = self.verified(self.header["code"], "the job's code", kind="code") if self.header.get("code") else None
        if self.code is not None:
            self.check_code_address()
        self.version = self.header.get("code_version", "")
        self.stage = "input"
        self.input = self.copied(naming.input_key(self.element), "the input of element %s" % self.element,
                                 kind="input", element=self.element)
        if self.input.header.get("code_version", self.version) != self.version:  # inputs of earlier releases: none
            raise CorruptBlobError(
                "%s was written for code version %r, but the job's function is of version %r: one of them is an "
                "older blob copied back in storage, and neither was unpickled; rerun the job to write both again"
                % (self.input.where, self.input.header.get("code_version"), self.version))
        for name, shared in self.input.header.get("shared", {}).items():
            self.shared[name] = self.copied(shared, "shared input %r" % name, addressed=True, kind="shared", name=name)
        self.key = None  # from here on nothing needs it
        return self

    def check_code_address(self):
        """The archive's sources must be the ones its name and the function's header address: a signed
        archive of the job's older code copied over the new name is refused, never unpacked."""
        header, archive = self.code
        digest = code_install.archive_digest(bytes(archive))
        wanted = self.header.get("code_digest") or header.get("digest")
        if naming.code_key(digest) != self.header["code"] or digest != header.get("digest") or digest != wanted:
            raise CorruptBlobError(
                "%s does not hold the code its name addresses (its sources' digest is %s): an older archive was "
                "copied over it in storage, and it was not unpacked; rerun the job to upload it again"
                % (self.where("the job's code", self.header["code"]), digest[:12]))

    def load(self, code_dir=None):
        """Unpack the code, then unpickle the function and the input: (function, args, kwargs)."""
        self.stage = "function"
        if self.code is not None:
            for warning in code_install.check_environment(self.code[0].get("requirements") or {}):
                print("kubeface: %s" % warning, flush=True)
            code_install.install(bytes(self.code[1]), code_dir or tempfile.mkdtemp(prefix="kubeface-code-"))
        function = cloudpickle.loads(self.payload)
        self.stage = "input"
        args, kwargs = self.input.load()
        for name, copy in self.shared.items():
            kwargs[name] = copy.load()
        self.close()
        return function, args, kwargs

    def close(self):
        for copy in [self.input] + list(self.shared.values()):
            if copy is not None:
                copy.close()


def _unusable(call, step):
    """Run one step of a VerifiedCall; whatever stops it is an UnusableCall naming the stage."""
    try:
        return step()
    except (KeyboardInterrupt, SystemExit, Terminated):
        call.close()
        raise
    except BaseException as error:  # noqa: BLE001 - whatever stops the call from loading is reported
        call.close()
        raise UnusableCall(error, getattr(call, "stage", "function"), traceback.format_exc()) from error


def fetch_call(storage, element, key):
    """The element's call, verified with the job's key and held privately, not yet unpickled (VerifiedCall)."""
    if not key:
        raise UnusableCall(SigningKeyError(
            "the attempt got no signing key in its environment (%s): the backend must hand the job's "
            "key to every attempt (local: a pipe; kubernetes: the job's Secret)" % serialization.KEY_ENV),
            "function")
    call = VerifiedCall(storage, element, key)
    return _unusable(call, call.fetch)


def load_call(storage, element, key, code_dir=None):
    """The job's function and one element's arguments, shared inputs included: (function, args, kwargs, version).

    What `kubeface reproduce` runs in the user's own Python. Every blob is verified before anything
    is unpickled, and what is unpickled is the private copy that was verified; the job's shipped code
    is checked against this environment and put first on sys.path (unpacked into code_dir) before
    the function is unpickled. Raises UnusableCall when the function, its code or the input cannot be used.
    """
    call = fetch_call(storage, element, key)
    return _unusable(call, lambda: call.load(code_dir)) + (call.version,)


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


@contextlib.contextmanager
def working_folder(path):
    """Work in path, then where the process was (the code folder is removed after the attempt)."""
    try:
        before = os.getcwd()
    except OSError:  # the process's folder was removed under it
        before = tempfile.gettempdir()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


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
    record = AttemptRecord.begin(element, attempt, host=socket.gethostname(),
                                 node=os.environ.get("KUBEFACE_NODE_NAME", ""),  # the Kubernetes backend sets it
                                 pid=os.getpid(), started=time.time(), **serialization.versions(), **_placement(),
                                 resources=cost.request_from_env(os.environ) if resources is None else resources)
    code = EXIT_OK
    job = naming.job_id_from_url(storage.url)
    code_dir = tempfile.mkdtemp(prefix="kubeface-code-")
    try:
        function, args, kwargs, version, signer = _prepare(storage, element, attempt, key, code_dir)
        key = None
    except UnusableCall as unusable:
        error = unusable.error
        known = isinstance(error, (VersionMismatchError, CorruptBlobError, BlobNotFoundError, SigningKeyError))
        fields = _error_fields(error)
        fields["message"] += "" if known else module_hint(error)
        record.end(Outcome.UNUSABLE_INPUT, stage=unusable.stage, **fields, traceback="" if known else unusable.trace)
        print("kubeface: the %s could not be loaded: %s: %s" % (unusable.stage, fields["error_type"], fields["message"]),
              file=sys.stderr)
        if not known:
            print(unusable.trace, file=sys.stderr)
        code = EXIT_UNUSABLE_INPUT
    else:
        record["code_version"] = version
        try:
            with working_folder(code_dir) if in_project else contextlib.nullcontext():
                value = function(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - the element's own failure, reported in full
            if isinstance(error, KeyboardInterrupt):
                raise
            if isinstance(error, Terminated):  # not the element's failure: the infrastructure stopped it
                record.end(Outcome.INTERRUPTED, error_type="Terminated", message=str(error))
                print("kubeface: %s" % error, file=sys.stderr)
                code = EXIT_TERMINATED
            else:
                fields = _error_fields(error)
                fields["message"] += module_hint(error)
                record.end(Outcome.ERROR, **fields, traceback=traceback.format_exc())
                traceback.print_exc()
                code = EXIT_ELEMENT_ERROR
        else:
            _SIGTERM_STOPS["attempt"] = False  # the element returned: its result and record get written
            extra = {"element": element, "attempt": attempt, "job": job, "signer": keys.ATTEMPT_SIGNER}
            if version:
                extra["code_version"] = version
            try:  # streamed: the pickle stream through a temporary file, large buffers straight from the value
                pickled = serialization.Pickled(value)
            except Exception as error:  # noqa: BLE001 - unpicklable results are user errors
                record.end(Outcome.ERROR, error_type="UnpicklableResult",
                           message="the element returned a %s that cannot be pickled (%s): return "
                           "plain data (numbers, lists, dicts, arrays)" % (type(value).__name__, error),
                           traceback=traceback.format_exc())
                code = EXIT_ELEMENT_ERROR
            else:
                with pickled:
                    blob = pickled.blob("result", extra, signer)
                    won = storage.write_stream_if_absent(naming.result_key(element, version), blob, blob.size)
                record.end(Outcome.SUCCESS, result_bytes=blob.size, result_written=won,
                           **summary.describe(value))  # what results tables read
                summary_seal.seal(record, signer, job, element, attempt)  # what ranks elements: signed
                if not won:
                    print("result of element %s was already written by another attempt; kept it" % element)
    finally:
        # A process runs one attempt; an in-process backend (simulated) runs thousands: sys.path must not
        # grow by one entry each (every import and metadata lookup scans it all).
        while code_dir in sys.path:
            sys.path.remove(code_dir)
        sys.path_importer_cache.pop(code_dir, None)  # its finder holds the folder's listing
        shutil.rmtree(code_dir, ignore_errors=True)
    record["finished"] = time.time()
    record["duration"] = record["finished"] - record["started"]
    return code, record


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
    if master_fd.isdigit():
        _die_with_master(int(master_fd))
    key = signing_key_from_env(os.environ)
    storage = open_storage(job_url)
    log_path = open_attempt_log(tempfile.gettempdir(), element, attempt)  # $TMPDIR when it is usable
    code, record = EXIT_RUNNER_ERROR, None
    try:
        code, record = run_attempt(storage, element, attempt, log_path, key)
    except Terminated as stopped:
        record = AttemptRecord.begin(element, attempt, host=socket.gethostname()).end(
            Outcome.INTERRUPTED, error_type="Terminated", message=str(stopped), finished=time.time(),
            **serialization.versions())
        code = EXIT_TERMINATED
    except BaseException as error:  # the runner itself failed (full disk, storage down): say so in the bucket
        record = AttemptRecord.begin(element, attempt, host=socket.gethostname()).end(
            Outcome.ERROR, error_type="RunnerError", message="the task runner failed: %s: %s" % (type(error).__name__, error),
            traceback=traceback.format_exc(), finished=time.time(), **serialization.versions())
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
    return code


if __name__ == "__main__":
    sys.exit(main())
