"""Everything under one job's storage prefix: one reader and one writer for each key.

naming.py builds the keys and records.py defines what each record holds; this module is the one
place that reads and writes them (the runner, which a pod runs, writes its attempt record and log
itself with the same two modules). Reading tools (`kubeface`, status pages, results) open a
JobStore alone: a job's definition (its function) is not needed to read what it did.
"""

import hashlib
import json
import os
from collections import namedtuple

from . import attempts, layout as naming, blobs as serialization
from ..errors import (
    BlobNotFoundError, ConfigurationError, CorruptBlobError, JobNotFoundError, KubefaceError, SigningKeyError,
    StorageError, UnreadableRecordError,
)
from .signing import KeyRing
from .lease_record import read_lease
from .records import AttemptRecord, ElementIndex, JobMeta, LiveProgress, RunSummary, elements_shown, luigi_flag
from ..storage import open_storage


class JobStore:
    """One job's prefix. code_version and reuse_any say which results count: a job's definition
    passes its own (a value, or a function computing it when first asked); None takes job.json's.
    legacy_version (likewise) is the same code's version as releases before code_package.code_reach
    computed it: its results count too, so an upgrade recomputes nothing."""

    def __init__(self, url, keys=None, retry_deadline=30.0, code_version=None, reuse_any=None,
                 legacy_version=None):
        self.url = url
        self.id = naming.check_job_id(naming.job_id_from_url(url))
        self.storage_root = url.rstrip("/").rsplit("/", 1)[0]
        self.retry_deadline = retry_deadline
        self.storage = open_storage(url, retry_deadline=retry_deadline)
        self.keys = keys or KeyRing()
        self._key = None
        self._code_version = code_version
        self._legacy_version = legacy_version
        self._reuse_any = reuse_any
        self._versions = None  # element -> code versions of its results, as last listed

    @classmethod
    def at(cls, storage_root, job_id, **options):
        return cls(naming.job_url(storage_root, job_id), **options)

    def __repr__(self):
        return "<JobStore %s>" % self.url

    # -- which results count --------------------------------------------------------------------

    @property
    def code_version(self):
        if callable(self._code_version):
            return self._code_version()
        if self._code_version is None:
            self._code_version = self.meta().code_version
        return self._code_version

    @property
    def counted_versions(self):
        """The code versions whose results count: this code's, and the same code's as tagged before."""
        legacy = self._legacy_version
        if callable(legacy):
            legacy = legacy()
        elif legacy is None and not callable(self._code_version):  # a tool's view: as job.json says
            legacy = self._legacy_version = self.meta().get("legacy_code_version") or ""
        current = self.code_version
        return (current, legacy) if legacy and legacy != current else (current,)

    @property
    def reuse_any(self):
        """Luigi's semantics ("the output exists") instead of results of this code only."""
        if self._reuse_any is None:
            self._reuse_any = self.meta().reuse_any
        return self._reuse_any

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
        self.storage.write(key, serialization.envelope(
            package.archive(), "code", {"job": self.id, "digest": package.digest, "modules": list(package.modules),
                                        "requirements": package.requirements}, self.signing_key()))
        return key

    def write_function(self, payload, code_key, code_version, code_digest=""):
        """code_digest: the shipped sources' full digest, which the runner checks the archive against."""
        self.storage.write(naming.FUNCTION, serialization.envelope(
            payload, "function", {"job": self.id, "code": code_key, "code_version": code_version,
                                  "code_digest": code_digest}, self.signing_key()))

    def write_shared(self, name, pickled):
        """A shared input (serialization.Pickled), uploaded once ever, streamed; returns its key."""
        extra = {"name": name, "job": self.id}
        key = naming.shared_key(name, serialization.header_digest(pickled.header("shared", extra, self.signing_key())))
        if not self.storage.exists(key):  # content-addressed: upload once, ever, streamed
            blob = pickled.blob("shared", extra, self.signing_key())
            self.storage.write_stream_if_absent(key, blob, blob.size)
        return key

    def write_input(self, element, shared_keys):
        """Signed with the code version it is for: the runner refuses it beside another version's function."""
        blob = serialization.envelope(element.payload, "input",
                                      {"element": element.key, "job": self.id, "shared": shared_keys,
                                       "code_version": self.code_version}, self.signing_key())
        self.storage.write(naming.input_key(element.key), blob)

    # -- results ----------------------------------------------------------------------------------

    def result_versions(self):
        """element -> code versions of its results, from one listing ("": written before versions)."""
        versions = {}
        for name in self.storage.list(naming.RESULTS_PREFIX):
            found = naming.result_from_key(name)
            if found:
                versions.setdefault(found[0], set()).add(found[1])
        self._versions = versions
        return versions

    def finished(self, versions=None):
        """Elements with a result of this code (of any code with reuse_results = any), from one listing
        (or from versions, a result_versions() just taken)."""
        versions = self.result_versions() if versions is None else versions
        if self.reuse_any:
            return set(versions)
        counted = set(self.counted_versions)
        return {k for k, found in versions.items() if counted & found}

    def result_version(self, key):
        """Which of an element's results counts: this code's, or with reuse any, one that exists."""
        current, *legacy = self.counted_versions
        if not self.reuse_any and not legacy:
            return current
        if self._versions is not None and key not in self._versions:
            return current  # no result at the run's listing: one since is this run's, of this code (no listing each)
        found = (self._versions or {}).get(key)
        if not found:
            found = {v for k, v in filter(None, map(naming.result_from_key,
                                                    self.storage.list(naming.result_key(key, "")[:-len(".pkl")])))
                     if k == key}
        if current in found or not found:
            return current
        if not self.reuse_any:
            return legacy[0] if legacy[0] in found else current
        return max(found)

    def drop_other_versions(self, key):
        """Delete an element's results of other code once this code's result is in (storage stays bounded).

        Called only once that result was checked whole (check_result(whole=True)), never on its header alone."""
        counted = self.counted_versions
        for version in (self._versions or {}).get(key, ()):
            if version not in counted:
                self.storage.delete(naming.result_key(key, version))

    def has_result(self, key):
        return self.storage.exists(naming.result_key(key, self.result_version(key)))

    def _result_place(self, key):
        """(blob key, description, the header fields it must carry) of the result that counts."""
        version = self.result_version(key)
        name = naming.result_key(key, version)
        expect = {"kind": "result", "job": self.id, "element": key}
        if version:  # a result filed under a code version must say so in its signed header
            expect["code_version"] = version
        return name, "the result of element %s (%s/%s)" % (key, self.url, name), expect

    def _quarantine(self, name, error):
        """Move a refused result aside (renamed, never rewritten from bytes read) so the next run recomputes it."""
        try:
            head = self.storage.head(name, serialization.HEAD_LIMIT).data
        except StorageError:  # gone, or a link (never followed): no note
            head = None
        aside = naming.quarantine_key(name)
        self.storage.move(name, aside)
        return type(error)("%s%s; it was moved aside to %s/%s: rerun the job to recompute it"
                           % (str(error).rstrip("; "), self._team_key_note(head), self.url, aside))

    def _team_key_note(self, head):
        """Say so when a refused blob is signed with the team key itself, as before keys were bound to job URLs."""
        if head is None or not self.keys.signing_key_file:
            return ""
        try:
            serialization.read_header(head, "", self.keys.stored_key(self.url), check_payload=False)
        except (CorruptBlobError, SigningKeyError):
            return ""
        return (" (it is signed with the team key itself, as luigi-kubeface did before each job's key was "
                "derived from the team key and the job's URL: such results could be replayed from another "
                "storage root, so they are refused and recomputed)")

    def check_result(self, key, whole=False):
        """Check a result from its first megabyte without unpickling it: its signed header; whole: its payload too
        (before a superseded result is deleted for it: a replacement altered after its write must not cost both).

        The signature, place and size are verified, and on GCS the payload against the crc32c GCS
        computed itself; the payload's sha256 is checked by load_result, before it unpickles.
        BlobNotFoundError if there is none. A refused result is moved aside (naming.quarantine_key)
        so that the next run recomputes it, and CorruptBlobError (or UntrustedBlobError) says so.
        """
        name, where, expect = self._result_place(key)
        try:
            head = self.storage.head(name, serialization.HEAD_LIMIT)
            header, offset = serialization.read_head(head.data, head.size, where, self.signing_key(), expect, fix="",
                                                     storage_crc32c=head.crc32c)
            if whole and head.crc32c is None:  # no storage vouched for the payload (local): read it once, hash it
                self._check_payload(name, where, header, offset)
            return header
        except CorruptBlobError as error:
            raise self._quarantine(name, error) from None

    def _check_payload(self, name, where, header, offset):
        """The payload's sha256 against the signed header, streamed: nothing is unpickled or kept."""
        digest = hashlib.sha256()
        with self.storage.open_read(name) as f:
            f.seek(offset)
            for chunk in iter(lambda: f.read(8 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != header.get("sha256"):
            raise CorruptBlobError("%s is altered (its sha256 differs from the signed header's)" % where)

    def load_result(self, key):
        """Stream the result in (GCS: through a temporary file), check it whole, then unpickle it once."""
        name, where, expect = self._result_place(key)
        try:
            with self.storage.open_read(name) as f:
                return serialization.load_stream(f, where, self.signing_key(), expect, fix="")[1]
        except CorruptBlobError as error:
            raise self._quarantine(name, error) from None

    def sweep_results(self, keys):
        """Check results after one was refused, so one rerun recomputes every damaged one: refused keys."""
        refused = []
        for key in keys:
            try:
                self.check_result(key)
            except BlobNotFoundError:
                pass
            except CorruptBlobError:
                refused.append(key)
        return refused

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
                "stays (a rerun writes job.json and elements.json again)" % (self.url, key, error)) from None
        if not isinstance(record, dict):
            raise UnreadableRecordError("%s/%s holds a JSON %s, not a record: it was altered; delete it"
                                        % (self.url, key, type(record).__name__))
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
            raise ConfigurationError("job %s: its %s holds layout_version %r, which is no number: restore the file, "
                                     "or give this job another job id" % (self.url, naming.JOB_META,
                                                                           meta.get("layout_version"))) from None
        if written > naming.LAYOUT_VERSION:
            raise ConfigurationError(
                "job %s was written by a newer luigi-kubeface (bucket layout %d; this release reads layouts up "
                "to %d): upgrade luigi-kubeface (pip install -U luigi-kubeface) on this machine and in the image, "
                "or give this job another job id or storage_root. Nothing in the job was changed"
                % (self.url, written, naming.LAYOUT_VERSION))

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

    def last_activity(self, meta):
        """When the job last did something: job.json (each dispatch), its last run, or its live progress.

        A running master rewrites progress.json every few seconds, so a job that runs for days is never
        "older than" a day.
        """
        runs = self.run_ids()
        try:
            last_run = self.run_summary(runs[-1]) if runs else None
        except UnreadableRecordError:
            last_run = None
        live = self.progress()
        latest = meta.updated
        for seen in ((last_run and last_run.finished), (live and live.updated)):
            try:
                latest = max(latest, float(seen or 0))
            except (ValueError, TypeError):  # an altered record: it says nothing of when
                pass
        return latest


# -- finding jobs ---------------------------------------------------------------------------------

def is_job_url(job_ref):
    """A job's URL or directory (gs://bucket/prefix/job, ./job, /path/job), rather than an id under a root."""
    return "://" in job_ref or "/" in job_ref or job_ref.startswith(".")


def resolve(job_ref, root):
    """(storage root, job id) of a job named by its URL or by its id under root.

    root: a storage root, or a function giving the default one (asked only for an id).
    """
    if is_job_url(job_ref):
        root, _, job_id = job_ref.rstrip("/").rpartition("/")
        if "://" not in job_ref:
            path = os.path.abspath(job_ref.rstrip("/"))
            root, job_id = os.path.dirname(path), os.path.basename(path)
    else:
        root = root() if callable(root) else root
        if not root:
            raise JobNotFoundError("job %r is an id but no storage root is set: pass --storage-root or set "
                                   "[kubeface] storage_root in luigi.cfg, or give the job's full URL" % job_ref)
        root, job_id = (root if "://" in root else os.path.abspath(os.path.expanduser(root))), job_ref
    try:
        naming.check_job_id(job_id)
    except ConfigurationError as error:  # an unusable id is a job that cannot exist
        raise JobNotFoundError("%r does not name a job: %s" % (job_ref, error)) from None
    return root, job_id


def open_job(job_ref, storage_root=None, keys=None):
    """The JobStore of a job id under storage_root, or of a job URL; JobNotFoundError if it has no job.json."""
    root, job_id = resolve(job_ref, storage_root)
    store = JobStore.at(root, job_id, keys=keys, retry_deadline=30.0)
    if not store.storage.exists(naming.JOB_META):
        raise JobNotFoundError(
            "no job %s: %s has no %s. Run `kubeface list --storage-root %s` to see the jobs there"
            % (job_id, store.url, naming.JOB_META, root))
    store.check_layout()
    return store


JobListing = namedtuple("JobListing", "job_id meta latest")  # meta: a JobMeta; latest: its last activity


def _listing(root, job_id):
    store = JobStore.at(root, job_id, retry_deadline=30.0)
    try:
        meta = store.read_meta()
    except UnreadableRecordError:  # a job all the same: list it, and say what is wrong (cleanup skips it)
        meta = JobMeta(function="? (its %s is not a valid JSON record)" % naming.JOB_META, unreadable=True)
    if meta is None:
        raise BlobNotFoundError("%s has no %s" % (store.url, naming.JOB_META))
    return JobListing(job_id, meta, store.last_activity(meta))


def list_jobs(root, on_skip=None):
    """A JobListing of every job directly under root; links and malformed jobs are skipped (on_skip(why))."""
    storage = open_storage(root, retry_deadline=30.0)
    jobs = []
    for name in storage.children(""):
        if not name.endswith("/"):
            continue  # a blob, or a link (never followed: it may point anywhere)
        try:
            jobs.append(_listing(root, name[:-1]))
        except BlobNotFoundError:
            continue  # not a job: no job.json
        except (ValueError, TypeError, AttributeError, KubefaceError) as error:
            if on_skip:
                on_skip("skipping %s/%s: not a usable job (%s)" % (root.rstrip("/"), name[:-1], error))
    return jobs
