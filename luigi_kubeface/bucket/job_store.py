"""Everything under one job's storage prefix: one reader and one writer for each key.

layout.py builds the keys and records.py defines what each record holds; this module is the one
place that reads and writes them (the runner, which a pod runs, writes its attempt record and log
itself with the same two modules). Results and their quarantine are result_store.py's half of a
JobStore; finding jobs is catalog.py's. Reading tools (`kubeface`, status pages, results) open a
JobStore alone: a job's definition (its function) is not needed to read what it did.
"""

import json

from . import attempts, layout as naming, blobs as serialization
from ..errors import BlobNotFoundError, ConfigurationError, SigningKeyError, UnreadableRecordError
from .signing import KeyRing
from .lease_record import read_lease
from .records import AttemptRecord, ElementIndex, JobMeta, LiveProgress, RunSummary, elements_shown, luigi_flag
from .result_store import Counting, ResultStore
from ..storage import open_storage


class JobStore(ResultStore):
    """One job's prefix. counting (a result_store.Counting) says which results count: a job's definition
    passes its own code version's; None takes job.json's, read when first needed (a reading tool's view)."""

    def __init__(self, url, keys=None, retry_deadline=30.0, counting=None):
        self.url = url
        self.id = naming.check_job_id(naming.job_id_from_url(url))
        self.storage_root = url.rstrip("/").rsplit("/", 1)[0]
        self.retry_deadline = retry_deadline
        self.storage = open_storage(url, retry_deadline=retry_deadline)
        self.keys = keys or KeyRing()
        self._key = None
        self._counting = counting

    @classmethod
    def at(cls, storage_root, job_id, **options):
        return cls(naming.job_url(storage_root, job_id), **options)

    def __repr__(self):
        return "<JobStore %s>" % self.url

    @property
    def counting(self):
        """Which results count (Counting): as given, or as job.json says (read once)."""
        if self._counting is None:
            self._counting = Counting.of_meta(self.meta())
        return self._counting

    # -- the signing key ----------------------------------------------------------------------------

    def signing_key(self):
        """The job's key (from the master's key file); SigningKeyError with the fix if it is not here."""
        if self._key is None:
            self._key = self.keys.load(self.url)
        return self._key

    def create_key(self):
        """Before the first launch: reuse the job's key, or make one if no result needs the old one."""
        try:
            return self.signing_key()
        except SigningKeyError:
            if self.keys.signing_key_file or self.finished():
                raise
        self._key = self.keys.create(self.url)
        return self._key

    def secret_env(self):
        """What each attempt needs privately (backends hand it over by a pipe or a Secret, never in argv or specs)."""
        return {serialization.KEY_ENV: self.signing_key().hex()}

    # -- what the runner reads: code, function, shared inputs, inputs ------------------------------

    def write_code(self, package):
        """The user's modules (a code_package.CodePackage), content-addressed; returns its key."""
        key = naming.code_key(package.digest)
        self.storage.write(
            key,
            serialization.envelope(
                package.archive(),
                "code",
                {
                    "job": self.id,
                    "digest": package.digest,
                    "modules": list(package.modules),
                    "requirements": package.requirements,
                },
                self.signing_key(),
            ),
        )
        return key

    def write_function(self, payload, code_key, code_version, code_digest=""):
        """code_digest: the shipped sources' full digest, which the runner checks the archive against."""
        self.storage.write(
            naming.FUNCTION,
            serialization.envelope(
                payload,
                "function",
                {"job": self.id, "code": code_key, "code_version": code_version, "code_digest": code_digest},
                self.signing_key(),
            ),
        )

    def write_shared(self, name, pickled):
        """A shared input (serialization.Pickled), uploaded once ever, streamed; returns its key."""
        extra = {"name": name, "job": self.id}
        key = naming.shared_key(name, serialization.header_digest(pickled.header("shared", extra, self.signing_key())))
        if not self.storage.exists(key):  # content-addressed: upload once, ever, streamed
            blob = pickled.blob("shared", extra, self.signing_key())
            self.storage.write_stream_if_absent(key, blob, blob.size)
        return key

    def write_input(self, element, shared_keys, code_version):
        """Signed with the code version it is for (the caller's): the runner refuses it beside another
        version's function."""
        blob = serialization.envelope(
            element.payload,
            "input",
            {"element": element.key, "job": self.id, "shared": shared_keys, "code_version": code_version},
            self.signing_key(),
        )
        self.storage.write(naming.input_key(element.key), blob)

    # -- JSON records -------------------------------------------------------------------------------

    def read_record(self, key, kind=dict):
        """A JSON record of the job as kind (a records.py type with from_json, or dict): None if absent,
        UnreadableRecordError (naming it) if it does not parse or is not an object."""
        try:
            data = self.storage.read(key)
        except BlobNotFoundError:
            return None
        try:
            record = json.loads(data)
        except ValueError as error:
            raise UnreadableRecordError(
                "%s/%s is not valid JSON (%s): it was cut short or altered. It is skipped; delete it if it "
                "stays (a rerun writes job.json and elements.json again)" % (self.url, key, error)
            ) from None
        if not isinstance(record, dict):
            raise UnreadableRecordError(
                "%s/%s holds a JSON %s, not a record: it was altered; delete it"
                % (self.url, key, type(record).__name__)
            )
        try:
            return record if kind is dict else kind.from_json(record)
        except ValueError as error:
            raise UnreadableRecordError("%s/%s: %s: it was altered; delete it" % (self.url, key, error)) from None

    def attempt_record(self, key, attempt):
        """The AttemptRecord of one attempt (None if it has none yet)."""
        return self.read_record(naming.attempt_record_key(key, attempt), AttemptRecord)

    def write_attempt_record(self, key, attempt, record, if_absent=False):
        """if_absent: the master's own account (cancelled, lost) never replaces what the runner wrote."""
        return attempts.write_record(self.storage, key, attempt, record, if_absent=if_absent)

    def attempts(self, key):
        """Attempt ids of an element, oldest first."""
        return attempts.element_attempts(self.storage, key)

    def all_attempts(self):
        """element -> its attempt ids, oldest first, from one listing."""
        return attempts.all_attempts(self.storage)

    def read_log(self, key, attempt):
        """An attempt's stdout and stderr (BlobNotFoundError while it runs, or if it left none)."""
        return attempts.read_log(self.storage, key, attempt)

    # -- runs -------------------------------------------------------------------------------------

    def write_run_summary(self, summary):
        self.storage.write(naming.dispatch_key(summary.run), summary.to_json())

    def run_summary(self, run):
        """The RunSummary of one run (None if that run wrote none)."""
        return self.read_record(naming.dispatch_key(run), RunSummary)

    def run_ids(self):
        """Every run that left a summary, oldest first (run ids start with their UTC time)."""
        return sorted(filter(None, map(naming.run_from_dispatch_key, self.storage.list(naming.DISPATCHES_PREFIX))))

    def mark_elements_shown(self, run):
        self.storage.write(naming.luigi_flag_key(run), luigi_flag(run))

    def elements_shown(self, run):
        """Whether the map task of this run showed its elements to Luigi (jobs written before the flag
        had its own key kept it in the run's summary)."""
        for key in (naming.luigi_flag_key(run), naming.dispatch_key(run)):
            record = self.read_record(key)
            if record is not None and elements_shown(record):
                return True
        return False

    def write_progress(self, live):
        """The master's LiveProgress, for `kubeface status` and `logs --follow` on other machines."""
        self.storage.write(naming.PROGRESS, live.to_json())

    def progress(self):
        """The LiveProgress last written, None if there is none or it does not parse."""
        try:
            return LiveProgress.from_json(self.storage.read(naming.PROGRESS))
        except (BlobNotFoundError, ValueError, TypeError, AttributeError):
            return None

    def write_status_page(self, html):
        self.storage.write(naming.STATUS_PAGE, html.encode())

    def lease_holder(self):
        """The lease record of the master that holds or last held the job (None if none ever did)."""
        return read_lease(self.storage)[0]

    # -- job.json and elements.json ------------------------------------------------------------------

    def write_meta(self, meta):
        self.storage.write(naming.JOB_META, JobMeta(meta, layout_version=naming.LAYOUT_VERSION).to_json())

    def check_layout(self):
        """Refuse a job that a newer release wrote in a layout this one cannot read, before touching it."""
        try:
            meta = self.read_meta()
        except UnreadableRecordError:
            return  # a rerun writes it again; the readers say what is wrong with it
        try:
            written = meta.layout_version if meta is not None else naming.LAYOUT_VERSION
        except (TypeError, ValueError):
            raise ConfigurationError(
                "job %s: its %s holds layout_version %r, which is no number: restore the file, "
                "or give this job another job id" % (self.url, naming.JOB_META, meta.get("layout_version"))
            ) from None
        if written > naming.LAYOUT_VERSION:
            raise ConfigurationError(
                "job %s was written by a newer luigi-kubeface (bucket layout %d; this release reads layouts up "
                "to %d): upgrade luigi-kubeface (pip install -U luigi-kubeface) on this machine and in the image, "
                "or give this job another job id or storage_root. Nothing in the job was changed"
                % (self.url, written, naming.LAYOUT_VERSION)
            )

    def read_meta(self):
        """job.json as a JobMeta: None if absent, UnreadableRecordError if it does not parse."""
        return self.read_record(naming.JOB_META, JobMeta)

    def meta(self):
        """job.json as the last master wrote it (empty if there is none or it cannot be read)."""
        try:
            return self.read_meta() or JobMeta()
        except UnreadableRecordError:
            return JobMeta()

    def write_elements(self, elements):
        """Parameters as JSON values too: results tables and charts read them with the labels, in one read."""
        self.storage.write(naming.ELEMENTS, ElementIndex.of(elements).to_json())

    def read_elements(self):
        """The ElementIndex: None if absent, UnreadableRecordError if it does not parse or lacks its keys."""
        return self.read_record(naming.ELEMENTS, ElementIndex)
