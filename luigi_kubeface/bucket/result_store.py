"""An element's results and their quarantine: which ones count, checking, loading, moving refused ones aside.

Which results count is a value, Counting, that the caller gives (a job's definition: its own code
version; a reading tool: job.json's). The listing of results (result_versions()) is the caller's
too: it passes it back to the reads that use it, so two threads reading one job (the engine and its
status page) never see each other's listing.
"""

import hashlib
from dataclasses import dataclass

from . import layout as naming, blobs as serialization
from ..errors import BlobNotFoundError, CorruptBlobError, SigningKeyError, StorageError


@dataclass(frozen=True)
class Counting:
    """Which results count: this code version's (current), the same code's as tagged by releases before
    the reach analysis (legacy: an upgrade recomputes nothing), or with reuse_any those of any code."""

    current: str
    legacy: str = ""
    reuse_any: bool = False

    @classmethod
    def of_meta(cls, meta):
        """As a job's job.json (a JobMeta) says: what its last master counted."""
        return cls(meta.code_version, meta.get("legacy_code_version") or "", meta.reuse_any)

    @property
    def versions(self):
        """The code versions whose results count: this code's, and the same code's as tagged before."""
        legacy = self.legacy
        return (self.current, legacy) if legacy and legacy != self.current else (self.current,)


class ResultStore:
    """The results half of a JobStore, which gives it storage, url, id, keys, signing_key() and counting."""

    @property
    def code_version(self):
        return self.counting.current

    @property
    def counted_versions(self):
        return self.counting.versions

    @property
    def reuse_any(self):
        """Luigi's semantics ("the output exists") instead of results of this code only."""
        return self.counting.reuse_any

    def result_versions(self):
        """element -> code versions of its results, from one listing ("": written before versions).
        Nothing keeps it: the caller passes it to the reads below that take versions."""
        versions = {}
        for name in self.storage.list(naming.RESULTS_PREFIX):
            found = naming.result_from_key(name)
            if found:
                versions.setdefault(found[0], set()).add(found[1])
        return versions

    def finished(self, versions=None):
        """Elements with a result of this code (of any code with reuse_results = any), from one listing
        (or from versions, a result_versions() just taken)."""
        versions = self.result_versions() if versions is None else versions
        if self.reuse_any:
            return set(versions)
        counted = set(self.counted_versions)
        return {k for k, found in versions.items() if counted & found}

    def result_version(self, key, versions=None):
        """Which of an element's results counts: this code's, or with reuse any, one that exists.
        versions: the caller's result_versions() (else, when it is needed, this element's are listed)."""
        current, *legacy = self.counted_versions
        if not self.reuse_any and not legacy:
            return current
        if versions is not None and key not in versions:
            return current  # no result at the run's listing: one since is this run's, of this code (no listing each)
        found = (versions or {}).get(key)
        if not found:
            found = {
                v
                for k, v in filter(
                    None, map(naming.result_from_key, self.storage.list(naming.result_key(key, "")[: -len(".pkl")]))
                )
                if k == key
            }
        if current in found or not found:
            return current
        if not self.reuse_any:
            return legacy[0] if legacy[0] in found else current
        return max(found)

    def drop_other_versions(self, key, versions):
        """Delete an element's results of other code (among versions, the caller's result_versions()) once
        this code's result is in: storage stays bounded.

        Called only once that result was checked whole (check_result(whole=True)), never on its header alone."""
        counted = self.counted_versions
        for version in versions.get(key, ()):
            if version not in counted:
                self.storage.delete(naming.result_key(key, version))

    def has_result(self, key, versions=None):
        return self.storage.exists(naming.result_key(key, self.result_version(key, versions)))

    def _result_place(self, key, versions):
        """(blob key, description, the header fields it must carry) of the result that counts."""
        version = self.result_version(key, versions)
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
        return type(error)(
            "%s%s; it was moved aside to %s/%s: rerun the job to recompute it"
            % (str(error).rstrip("; "), self._team_key_note(head), self.url, aside)
        )

    def _team_key_note(self, head):
        """Say so when a refused blob is signed with the team key itself, as before keys were bound to job URLs."""
        if head is None or not self.keys.signing_key_file:
            return ""
        try:
            serialization.read_header(head, "", self.keys.stored_key(self.url), check_payload=False)
        except (CorruptBlobError, SigningKeyError):
            return ""
        return (
            " (it is signed with the team key itself, as luigi-kubeface did before each job's key was "
            "derived from the team key and the job's URL: such results could be replayed from another "
            "storage root, so they are refused and recomputed)"
        )

    def check_result(self, key, whole=False, versions=None):
        """Check a result from its first megabyte without unpickling it: its signed header; whole: its payload too
        (before a superseded result is deleted for it: a replacement altered after its write must not cost both).

        The signature, place and size are verified, and on GCS the payload against the crc32c GCS
        computed itself; the payload's sha256 is checked by load_result, before it unpickles.
        BlobNotFoundError if there is none. A refused result is moved aside (naming.quarantine_key)
        so that the next run recomputes it, and CorruptBlobError (or UntrustedBlobError) says so.
        """
        name, where, expect = self._result_place(key, versions)
        try:
            head = self.storage.head(name, serialization.HEAD_LIMIT)
            header, offset = serialization.read_head(
                head.data, head.size, where, self.signing_key(), expect, fix="", storage_crc32c=head.crc32c
            )
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

    def load_result(self, key, versions=None):
        """Stream the result in (GCS: through a temporary file), check it whole, then unpickle it once."""
        name, where, expect = self._result_place(key, versions)
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
