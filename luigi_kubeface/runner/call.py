"""One element's call, as the runner gets it: verified blob by blob with the job's key, held privately,
then loaded (the shipped code installed, the function and input unpickled). Whatever stops it is an
UnusableCall naming its stage; module_hint says what to do about a module or a file the attempt lacks.

What an attempt (attempt.py) and `kubeface reproduce` (load_call) run.
"""

import contextlib
import os
import tempfile
import traceback

import cloudpickle

from ..bucket import blobs as serialization, layout as naming
from ..bucket.private_copy import private_copy
from ..errors import CorruptBlobError, SigningKeyError
from ..job.code import install as code_install


class Terminated(BaseException):
    """SIGTERM reached the runner (its pod is deleted or evicted, or a master cancelled it): the attempt
    stops where it is, writes no result, and records that the infrastructure stopped it."""


# Until the element's function returns, SIGTERM stops the attempt; after, it lets the runner finish writing the


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
        return (
            "; module %r is neither installed in the image nor shipped with your code. If it is your own "
            "module, add it to [kubeface] code_include (the analysis follows import statements only); if it "
            "is a package, install it in the image (images/Dockerfile)" % error.name
        )
    if isinstance(error, FileNotFoundError):
        return _file_hint(error.filename)
    return ""


def _file_hint(filename):
    """Elements run in the shipped project's root (run_attempt), where only the files code_include names are."""
    name = os.fsdecode(filename) if isinstance(filename, (str, bytes)) else ""
    if name and os.path.isabs(name):
        return (
            "; %r is a path of one machine, not of the attempt's: ship the file with [kubeface] code_include "
            "and open it by its path relative to your project's root (elements run there), or pass its "
            "content as a shared input" % name
        )
    what = "%r is not in the element's working folder" % name if name else "a file is missing"
    return (
        "; %s, the root of your project as the job ships it (where your pipeline module is imported from): "
        "data files ship only when named in [kubeface] code_include (e.g. code_include = data/proteins.txt, "
        "relative to that root)" % what
    )


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
        return serialization.read_header(
            self.storage.read(blob_key), self.where(what, blob_key), self.key, dict(expect, job=self.job)
        )

    def copied(self, blob_key, what, addressed=False, **expect):
        """Inputs and shared inputs: copied once out of storage, checked whole on the way (private_copy)."""
        where = self.where(what, blob_key)

        def address(header):  # content-addressed: an older signed blob copied over this name must not pass for it
            if addressed and not serialization.header_digest(header).startswith(naming.shared_digest(blob_key)):
                raise CorruptBlobError(
                    "%s does not hold the content its name addresses: it was replaced in storage "
                    "and was not unpickled; delete it and rerun to upload it again" % where
                )

        with self.storage.open_read(blob_key) as f:
            return private_copy(f, where, self.key, dict(expect, job=self.job), check=address)

    def fetch(self):
        """Verify everything the call needs with the job's key (the "function" stage, then "input")."""
        self.stage = "function"
        self.function_where = self.where("the job's function", naming.FUNCTION)
        self.header, self.payload = self.verified(naming.FUNCTION, "the job's function", kind="function")
        serialization.check_versions(self.header, self.function_where)  # before anything else: the likeliest cause
        self.code = (
            self.verified(self.header["code"], "the job's code", kind="code") if self.header.get("code") else None
        )
        if self.code is not None:
            self.check_code_address()
        self.version = self.header.get("code_version", "")
        self.stage = "input"
        self.input = self.copied(
            naming.input_key(self.element), "the input of element %s" % self.element, kind="input", element=self.element
        )
        if self.input.header.get("code_version", self.version) != self.version:  # inputs of earlier releases: none
            raise CorruptBlobError(
                "%s was written for code version %r, but the job's function is of version %r: one of them is an "
                "older blob copied back in storage, and neither was unpickled; rerun the job to write both again"
                % (self.input.where, self.input.header.get("code_version"), self.version)
            )
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
                % (self.where("the job's code", self.header["code"]), digest[:12])
            )

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
        raise UnusableCall(
            SigningKeyError(
                "the attempt got no signing key in its environment (%s): the backend must hand the job's "
                "key to every attempt (local: a pipe; kubernetes: the job's Secret)" % serialization.KEY_ENV
            ),
            "function",
        )
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
