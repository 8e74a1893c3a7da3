"""What a job's storage says about it, for people: element states, attempts, timings, errors.

Read from storage alone, so the status page and `kubeface status` work from any machine. Listings
are redone on every refresh; an attempt record never changes once written, so each is read once
and cached, at most `max_reads` per refresh (those that decide an element's state first, then the
newest): a job of 50,000 elements does not read 50,000 records every time its page is redrawn.
"""

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .. import cost
from ..bucket import layout as naming, seal as summary_seal
from ..errors import BlobNotFoundError, ElementNotFoundError, SigningKeyError, UnreadableRecordError
from ..bucket.records import FAILED, ElementIndex, JobMeta, Outcome, outcome_of
from .states import ElementState

READ_THREADS = 8


@dataclass
class ElementView:
    index: int  # position in the grid as last dispatched (-1: not in it any more)
    key: str
    label: str
    state: ElementState
    attempts: list = field(default_factory=list)  # attempt ids, oldest first (running ones last)
    records: dict = field(default_factory=dict)  # attempt id -> record, for those read so far
    running_since: float = 0.0  # wall time the running attempt started (live view only)
    params: dict = field(default_factory=dict)  # the parameters by name, as elements.json keeps them
    version: str = ""  # the code version whose result counts (its record's summary is the one shown)
    trusted: set = field(default_factory=set)  # attempts whose summary verified (or counts as an earlier release's)

    @property
    def last_record(self):
        for attempt in reversed(self.attempts):
            if attempt in self.records:
                return self.records[attempt]
        return None

    @property
    def duration(self):
        """Seconds of the successful attempt, else of the last attempt (so far, if running)."""
        if self.state == ElementState.RUNNING and self.running_since:
            return max(0.0, time.time() - self.running_since)
        ok = [r for r in self.records.values() if outcome_of(r) is Outcome.SUCCESS and r.get("duration") is not None]
        record = ok[0] if ok else self.last_record
        return record.get("duration") if record else None

    @property
    def usage(self):
        """The element's own cost.Usage: its attempts' resources times their durations (None: none tells)."""
        return cost.element_usage(self.records[a] for a in self.attempts if a in self.records)

    @property
    def result_record(self):
        """The record of the successful attempt that wrote the result that counts, if it is read.

        That of the job's code version, the attempt that wrote the result first, newest first.
        Only records whose summary verified (summary_seal.py) are candidates: an unsigned record decides nothing.
        """
        ok = [r for a, r in self.records.items() if outcome_of(r) is Outcome.SUCCESS and a in self.trusted]
        ok.sort(
            key=lambda r: (
                r.get("code_version", "") == self.version,
                r.get("result_written", True) is not False,
                r.get("finished") or 0,
            ),
            reverse=True,
        )
        return ok[0] if ok else None

    @property
    def summary(self):
        """The result's numbers as the runner summarised them ({} when none are known)."""
        record = self.result_record if self.state == ElementState.DONE else None
        summary = (record or {}).get("summary")
        return summary if isinstance(summary, dict) else {}

    @property
    def host(self):
        record = self.last_record
        return (record or {}).get("node") or (record or {}).get("host", "")  # a pod's node, else the machine

    @property
    def placement(self):
        """What the element's attempts ran with, when it changed: '' for an element that ran as configured.

        E.g. 'memory 1Gi, 2Gi; preempted 2 times on spot, last attempt off spot' (oom_memory_factor,
        spot_fallback_after), from the records read so far, oldest first.
        """
        records = [self.records[a] for a in self.attempts if a in self.records]
        memory = []
        for record in records:
            limit = record.get("memory_limit")
            if limit and (not memory or memory[-1] != limit):
                memory.append(str(limit))
        preempted = sum(1 for r in records if outcome_of(r) is Outcome.INTERRUPTED)
        spot = [r.get("spot") for r in records if isinstance(r.get("spot"), bool)]
        parts = ["memory %s" % ", ".join(memory)] if len(memory) > 1 else []
        if preempted or any(spot):
            where = " on spot" if any(spot) else ""
            last = (", last attempt %s spot" % ("on" if spot[-1] else "off")) if spot else ""
            parts.append("preempted %d time%s%s%s" % (preempted, "" if preempted == 1 else "s", where, last))
        return "; ".join(parts)

    @property
    def error(self):
        """'ErrorType: first line of the message' of the last failed attempt, if it failed."""
        record = self.last_record
        if outcome_of(record) not in FAILED:
            return ""
        message = (record.get("message") or "").strip()
        return "%s: %s" % (record.get("error_type", "Error"), message.splitlines()[0] if message else "")


class JobState:
    """A read-only view of a job as its store shows it; refresh() rereads listings and only records
    not read before. job: a JobStore (a Job gives its own)."""

    def __init__(self, job, max_reads=2000, read_live=True):
        self.store = getattr(job, "store", job)
        self.max_reads = max_reads
        self.read_live = read_live  # the master's own view is fresher than what it last wrote
        self.live = None  # the LiveProgress its master last wrote (progress.json)
        self.meta = JobMeta()
        self.keys, self.labels, self.params = [], [], []
        self.results = set()
        self.version_counts = Counter()  # code version -> results filed under it ("": before versions)
        self.attempts = {}  # element -> [attempt ids], oldest first
        self.records = {}  # (element, attempt) -> AttemptRecord (cached: records never change)
        self.dispatches = {}  # run id -> RunSummary
        self.unread = 0  # records listed but not read yet (over max_reads)
        self.unreadable = {}  # storage key -> why it cannot be read (skipped: everything else is shown)
        self.summary_verdicts = {}  # (element, attempt) -> summary_seal verdict, for successful attempts
        self._summary_key = None  # the job's key, once loaded; its SigningKeyError's text if not on this machine
        self._elements_stamp = None
        self.refreshed = 0.0

    @property
    def job(self):
        """The store viewed (what pages and commands name the job by: id, url)."""
        return self.store

    def refresh(self, max_reads=None):
        self._refresh_meta()
        if self.read_live:
            self.live = self.store.progress()
        versions = self.store.result_versions()
        self.results = self.store.finished(versions)
        self.version_counts = Counter(v for found in versions.values() for v in found)
        self.attempts = self.store.all_attempts()
        if not self.keys:  # a job written before elements.json existed: what storage shows
            self.keys = sorted(set(self.attempts) | self.results)
            self.labels = list(self.keys)
            self.params = [{}] * len(self.keys)
        self._read_records(self.max_reads if max_reads is None else max_reads)
        for run in self.store.run_ids():
            if run not in self.dispatches:
                summary = self._read(naming.dispatch_key(run), self.store.run_summary, run)
                if summary is not None:
                    self.dispatches[run] = summary
        self.refreshed = time.time()
        return self

    def _refresh_meta(self):
        """job.json, and the grid when a dispatch rewrote it (each one stamps job.json)."""
        meta = self._read(naming.JOB_META, self.store.read_meta)
        if meta is None and naming.JOB_META not in self.unreadable:
            raise BlobNotFoundError("%s/%s is gone: the job was deleted" % (self.store.url, naming.JOB_META))
        self.meta = meta or JobMeta()
        stamp = self.meta.get("updated")
        if stamp != self._elements_stamp or not stamp:  # the grid is rewritten by each dispatch only
            index = self._read(naming.ELEMENTS, self.store.read_elements) or ElementIndex([], [], [])
            self.keys, self.labels, self.params = index.keys, index.labels, index.params
            self._elements_stamp = stamp

    def _read_records(self, limit):
        """Attempt records not read yet, at most limit: those that decide a state first, then the newest."""
        missing = [
            (el, a)
            for el, ids in self.attempts.items()
            for a in ids
            if (el, a) not in self.records and naming.attempt_record_key(el, a) not in self.unreadable
        ]
        # States first (the last attempt of elements without a result), then the newest timings.
        missing.sort(
            key=lambda ea: (
                ea[0] not in self.results and ea[1] == self.attempts[ea[0]][-1],
                ea[1] == self.attempts[ea[0]][-1],
                naming.attempt_time(ea[1]),
            ),
            reverse=True,
        )
        chosen = missing[:limit]
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:  # reads are latency-bound on GCS
            read = pool.map(
                lambda ea: self._read(naming.attempt_record_key(*ea), self.store.attempt_record, *ea), chosen
            )
            for (element, attempt), record in zip(chosen, read):
                if record is not None:
                    self.records[(element, attempt)] = record
                    if outcome_of(record) is Outcome.SUCCESS:
                        self.summary_verdicts[(element, attempt)] = summary_seal.verdict(
                            record, self._job_key(), self.store.id, element, attempt, self._current_version()
                        )
        self.unread = max(0, len(missing) - limit)

    def _job_key(self):
        """The key that verifies summaries, None when it is not on this machine (then none verifies)."""
        if self._summary_key is None:
            try:
                self._summary_key = self.store.signing_key()
            except SigningKeyError as error:
                self._summary_key = str(error)
        return self._summary_key if isinstance(self._summary_key, bytes) else None

    def _current_version(self):
        try:
            return self.store.code_version or ""
        except Exception:  # noqa: BLE001 - a tool's view of an altered job.json: no version is current
            return self.meta.get("code_version", "")

    def summary_notes(self):
        """One line per kind of summary refused (or counted unverified), for the reader to see: [] when all verified."""
        by_verdict = {}
        for (element, _), verdict in sorted(self.summary_verdicts.items()):
            if verdict != summary_seal.VERIFIED:
                by_verdict.setdefault(verdict, []).append(element)
        notes = []
        for verdict, elements in sorted(by_verdict.items()):
            shown = ", ".join(sorted(set(elements))[:5]) + (", ..." if len(set(elements)) > 5 else "")
            if verdict == summary_seal.EARLIER:
                notes.append(
                    "%d summaries counted unverified: written by an earlier release, unsigned (elements %s); "
                    "anyone who may write the bucket could have altered them" % (len(elements), shown)
                )
            elif verdict == summary_seal.NO_KEY:
                notes.append(
                    "%d summaries refused: %s (%s) (elements %s)" % (len(elements), verdict, self._summary_key, shown)
                )
            else:
                notes.append(
                    "%d summaries refused: %s (forged or altered in storage; elements %s)"
                    % (len(elements), verdict, shown)
                )
        return notes

    def _read(self, key, read, *args):
        """read(*args): a record, or None if it is absent or unreadable (then named in self.unreadable)."""
        try:
            record = read(*args)
        except UnreadableRecordError as error:
            self.unreadable[key] = str(error)
            return None
        self.unreadable.pop(key, None)
        return record

    def live_running(self, max_age=300.0):
        """attempt -> (element, start) of a master still running the job, as it last wrote (None if none).

        A master refreshes it every few seconds; one silent for max_age has probably stopped.
        """
        return self.live.running_now(max_age) if self.live else None

    @property
    def last_dispatch(self):
        """The RunSummary of the last master run that ran the job (Luigi's bookkeeping-only records are not runs)."""
        runs = [summary for summary in self.dispatches.values() if summary.is_run]
        # By start time: run ids of one second do not sort by time.
        return max(runs, key=lambda summary: (summary.started, summary.run)) if runs else None

    def cost(self, progress=None):
        """What the job used, per category (cost.Ledger): every run's summary, and a running master's so far.

        progress: the engine's own Progress while it runs (a master's page), fresher than progress.json.
        """
        runs = [summary for summary in self.dispatches.values() if summary.is_run]
        ledgers = [summary.cost for summary in runs]
        if progress is not None:
            ledgers.append(progress.cost)
        elif self.live and not self.live.final and self.live.updated > max([s.finished or 0 for s in runs] + [0]):
            ledgers.append(cost.Ledger.from_json(self.live.counts.get("cost")))  # its summary is not written yet
        return cost.total_of(ledgers)

    def elements(self, running=None, grid=None):
        """ElementView of every element in grid order.

        running: attempt -> (element, start) from a live master (None: no master runs the job now);
        with it, elements that have not run yet are "pending" rather than "not run".
        grid: (keys, labels, params) to describe instead of the grid elements.json holds (a master's own).
        """
        live = {}
        for attempt, (key, started) in (running or {}).items():
            live.setdefault(key, (attempt, started))
        states = []
        version = self.meta.get("code_version", "")
        for index, (key, label, params) in enumerate(zip(*(grid or (self.keys, self.labels, self.params)))):
            ids = list(self.attempts.get(key, []))
            records = {a: self.records[(key, a)] for a in ids if (key, a) in self.records}
            trusted = {
                a for a in ids if self.summary_verdicts.get((key, a)) in (summary_seal.VERIFIED, summary_seal.EARLIER)
            }
            element = ElementView(
                index,
                key,
                label,
                ElementState.NOT_RUN if running is None else ElementState.PENDING,
                ids,
                records,
                params=params,
                version=version,
                trusted=trusted,
            )
            last = records.get(ids[-1]) if ids else None
            if key in self.results:
                element.state = ElementState.DONE
            elif key in live:
                element.state = ElementState.RUNNING
                attempt, element.running_since = live[key]
                if attempt not in ids:
                    element.attempts.append(attempt)
            elif last is not None:
                outcome = outcome_of(last)
                element.state = (
                    ElementState.FAILED
                    if outcome in FAILED
                    else ElementState.CANCELLED
                    if outcome is Outcome.CANCELLED
                    else ElementState.UNFINISHED
                )
            elif ids:
                element.state = ElementState.UNFINISHED  # its record is not read yet
            states.append(element)
        return states

    def counts(self, elements):
        counts = {"elements": len(elements)}
        for element in elements:
            counts[element.state] = counts.get(element.state, 0) + 1
        counts["attempts"] = sum(len(ids) for ids in self.attempts.values())
        return counts

    def find(self, name, elements=None):
        """The element a user means: its key, its exact label, @index, or a unique key prefix."""
        elements = self.elements() if elements is None else elements
        by_key = {e.key: e for e in elements}
        if name in by_key:
            return by_key[name]
        labelled = [e for e in elements if e.label == name]
        if len(labelled) == 1:
            return labelled[0]
        if name.startswith("@") and name[1:].isdigit():
            index = int(name[1:])
            if index < len(elements):
                return elements[index]
            raise ElementNotFoundError(
                "job %s has %d elements: @%d is out of range (use @0 to @%d)"
                % (self.store.id, len(elements), index, len(elements) - 1)
            )
        matches = [e for e in elements if e.key.startswith(name)] if len(name) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1 or len(labelled) > 1:
            found = labelled or matches
            raise ElementNotFoundError(
                "%r matches %d elements of job %s (%s): give more of the key"
                % (name, len(found), self.store.id, ", ".join(e.key for e in found[:5]))
            )
        raise ElementNotFoundError(
            "job %s has no element %r: name one by its key (or 4+ leading characters), its exact parameters "
            "as `kubeface status` shows them (e.g. %r), or @N for the N-th element of the grid"
            % (self.store.id, name, elements[0].label if elements else "x=1")
        )
