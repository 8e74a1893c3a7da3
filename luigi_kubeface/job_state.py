"""What a job's storage says about it, for people: element states, attempts, timings, errors.

Read from storage alone, so the status page and `kubeface status` work from any machine. Listings
are redone on every refresh; an attempt record never changes once written, so each is read once
and cached, at most `max_reads` per refresh (those that decide an element's state first, then the
newest): a job of 50,000 elements does not read 50,000 records every time its page is redrawn.
"""

import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import naming
from .errors import (BlobNotFoundError, ConfigurationError, ElementNotFoundError, JobNotFoundError,
                     UnreadableRecordError)
from .job import Job

# Outcomes of an attempt, as recorded by the runner or (when the runner could not) the master.
FAILED_OUTCOMES = ("error", "unusable_input", "lost", "timeout")
READ_THREADS = 8


@dataclass
class ElementState:
    index: int  # position in the grid as last dispatched (-1: not in it any more)
    key: str
    label: str
    state: str  # done | failed | cancelled | running | unfinished | not run
    attempts: list = field(default_factory=list)  # attempt ids, oldest first (running ones last)
    records: dict = field(default_factory=dict)  # attempt id -> record, for those read so far
    running_since: float = 0.0  # wall time the running attempt started (live view only)
    params: dict = field(default_factory=dict)  # the parameters by name, as elements.json keeps them
    version: str = ""  # the code version whose result counts (its record's summary is the one shown)

    @property
    def last_record(self):
        for attempt in reversed(self.attempts):
            if attempt in self.records:
                return self.records[attempt]
        return None

    @property
    def duration(self):
        """Seconds of the successful attempt, else of the last attempt (so far, if running)."""
        if self.state == "running" and self.running_since:
            return max(0.0, time.time() - self.running_since)
        ok = [r for r in self.records.values() if r.get("outcome") == "success" and r.get("duration") is not None]
        record = ok[0] if ok else self.last_record
        return record.get("duration") if record else None

    @property
    def result_record(self):
        """The record of the successful attempt that wrote the result that counts, if it is read.

        That of the job's code version, the attempt that wrote the result first, newest first.
        """
        ok = [r for r in self.records.values() if r.get("outcome") == "success"]
        ok.sort(key=lambda r: (r.get("code_version", "") == self.version, r.get("result_written", True) is not False,
                               r.get("finished") or 0), reverse=True)
        return ok[0] if ok else None

    @property
    def summary(self):
        """The result's numbers as the runner summarised them ({} when none are known)."""
        record = self.result_record if self.state == "done" else None
        summary = (record or {}).get("summary")
        return summary if isinstance(summary, dict) else {}

    @property
    def host(self):
        record = self.last_record
        return (record or {}).get("node") or (record or {}).get("host", "")  # a pod's node, else the machine

    @property
    def error(self):
        """'ErrorType: first line of the message' of the last failed attempt, if it failed."""
        record = self.last_record
        if not record or record.get("outcome") not in FAILED_OUTCOMES:
            return ""
        message = (record.get("message") or "").strip()
        return "%s: %s" % (record.get("error_type", "Error"), message.splitlines()[0] if message else "")


def open_job(job_ref, storage_root=None):
    """A Job for a job id under storage_root, or for a job URL (gs://bucket/prefix/job, a directory)."""
    if "://" in job_ref or "/" in job_ref or job_ref.startswith("."):
        root, _, job_id = job_ref.rstrip("/").rpartition("/")
        if "://" not in job_ref:
            path = os.path.abspath(job_ref.rstrip("/"))
            root, job_id = os.path.dirname(path), os.path.basename(path)
    else:
        if not storage_root:
            raise JobNotFoundError("job %r is an id but no storage root is set: pass --storage-root or set "
                                   "[kubeface] storage_root in luigi.cfg, or give the job's full URL" % job_ref)
        root, job_id = storage_root, job_ref
        if "://" not in root:
            root = os.path.abspath(os.path.expanduser(root))
    try:
        naming.check_job_id(job_id)
    except ConfigurationError as error:  # an unusable id is a job that cannot exist
        raise JobNotFoundError("%r does not name a job: %s" % (job_ref, error)) from None
    job = Job(job_id, root, retry_deadline=30.0)
    if not job.storage.exists(naming.JOB_META):
        raise JobNotFoundError(
            "no job %s: %s has no %s. Run `kubeface list --storage-root %s` to see the jobs there"
            % (job_id, job.url, naming.JOB_META, root))
    return job


class JobState:
    """A job as storage shows it; refresh() rereads listings and only records not read before."""

    def __init__(self, job, max_reads=2000, read_live=True):
        self.job = job
        self.max_reads = max_reads
        self.read_live = read_live  # the master's own view is fresher than what it last wrote
        self.live = None  # progress.json: the master's counts and running attempts, as last written
        self.meta = {}
        self.keys, self.labels, self.params = [], [], []
        self.results = set()
        self.version_counts = Counter()  # code version -> results filed under it ("": before versions)
        self.attempts = {}  # element -> [attempt ids], oldest first
        self.records = {}  # (element, attempt) -> record (cached: records never change)
        self.dispatches = {}  # run id -> summary
        self.unread = 0  # records listed but not read yet (over max_reads)
        self.unreadable = {}  # storage key -> why it cannot be read (skipped: everything else is shown)
        self._elements_stamp = None
        self.refreshed = 0.0

    def refresh(self, max_reads=None):
        storage = self.job.storage
        self.meta = self._read(naming.JOB_META)
        if self.meta is None:
            if naming.JOB_META not in self.unreadable:
                raise BlobNotFoundError("%s/%s is gone: the job was deleted" % (self.job.url, naming.JOB_META))
            self.meta = {}
        stamp = self.meta.get("updated")
        if stamp != self._elements_stamp or not stamp:  # the grid is rewritten by each dispatch only
            index = self._read(naming.ELEMENTS) or {}
            keys, labels = index.get("keys"), index.get("labels")
            if not (isinstance(keys, list) and isinstance(labels, list) and len(keys) == len(labels)):
                if index:
                    self.unreadable[naming.ELEMENTS] = "%s/%s lacks its keys and labels: it was altered" % (
                        self.job.url, naming.ELEMENTS)
                keys, labels = [], []
            params = index.get("params")  # absent in jobs written before parameters were kept
            if not (isinstance(params, list) and len(params) == len(keys)):
                params = [{}] * len(keys)
            self.keys, self.labels = keys, labels
            self.params = [p if isinstance(p, dict) else {} for p in params]
            self._elements_stamp = stamp
        if self.read_live:
            try:
                self.live = json.loads(storage.read(naming.PROGRESS))
            except (BlobNotFoundError, ValueError):
                self.live = None
        versions = self.job.result_versions()
        self.results = self.job.finished(versions)
        self.version_counts = Counter(v for found in versions.values() for v in found)
        attempts = {}
        for key in storage.list(naming.ATTEMPTS_PREFIX):
            found = naming.attempt_from_record_key(key)
            if found:
                attempts.setdefault(found[0], []).append(found[1])
        self.attempts = {k: sorted(v) for k, v in attempts.items()}
        if not self.keys:  # a job written before elements.json existed: what storage shows
            self.keys = sorted(set(self.attempts) | self.results)
            self.labels = list(self.keys)
            self.params = [{}] * len(self.keys)
        missing = [(el, a) for el, ids in self.attempts.items() for a in ids
                   if (el, a) not in self.records and naming.attempt_record_key(el, a) not in self.unreadable]
        # States first (the last attempt of elements without a result), then the newest timings.
        missing.sort(key=lambda ea: (ea[0] not in self.results and ea[1] == self.attempts[ea[0]][-1],
                                     ea[1] == self.attempts[ea[0]][-1], naming.attempt_time(ea[1])), reverse=True)
        limit = self.max_reads if max_reads is None else max_reads
        chosen = missing[:limit]
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:  # reads are latency-bound on GCS
            read = pool.map(lambda ea: self._read(naming.attempt_record_key(*ea)), chosen)
            for (element, attempt), record in zip(chosen, read):
                if record is not None:
                    self.records[(element, attempt)] = record
        self.unread = max(0, len(missing) - limit)
        for key in storage.list(naming.DISPATCHES_PREFIX):
            run = key[len(naming.DISPATCHES_PREFIX):-len(".json")]
            if run not in self.dispatches and key not in self.unreadable:
                summary = self._read(key)
                if summary is not None:
                    self.dispatches[run] = summary
        self.refreshed = time.time()
        return self

    def _read(self, key):
        """A record, or None if it is absent or unreadable (then named in self.unreadable)."""
        try:
            record = self.job.read_record(key)
        except UnreadableRecordError as error:
            self.unreadable[key] = str(error)
            return None
        self.unreadable.pop(key, None)
        return record

    def live_running(self, max_age=300.0):
        """attempt -> (element, start) of a master still running the job, as it last wrote (None if none).

        A master refreshes it every few seconds; one silent for max_age has probably stopped.
        """
        if not self.live or self.live.get("final") or time.time() - self.live.get("updated", 0) > max_age:
            return None
        return {attempt: tuple(value) for attempt, value in self.live.get("running", {}).items()}

    @property
    def last_dispatch(self):
        """The summary of the last master run that ran the job (Luigi's bookkeeping-only records are not runs)."""
        runs = [run for run, summary in self.dispatches.items() if "started" in summary]
        return self.dispatches[max(runs)] if runs else None

    def elements(self, running=None, grid=None):
        """ElementState of every element in grid order.

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
            element = ElementState(index, key, label, "not run" if running is None else "pending", ids, records,
                                   params=params, version=version)
            last = records.get(ids[-1]) if ids else None
            if key in self.results:
                element.state = "done"
            elif key in live:
                element.state = "running"
                attempt, element.running_since = live[key]
                if attempt not in ids:
                    element.attempts.append(attempt)
            elif last is not None:
                outcome = last.get("outcome")
                element.state = ("failed" if outcome in FAILED_OUTCOMES else
                                 "cancelled" if outcome == "cancelled" else "unfinished")
            elif ids:
                element.state = "unfinished"  # its record is not read yet
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
            raise ElementNotFoundError("job %s has %d elements: @%d is out of range (use @0 to @%d)"
                                       % (self.job.id, len(elements), index, len(elements) - 1))
        matches = [e for e in elements if e.key.startswith(name)] if len(name) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1 or len(labelled) > 1:
            found = labelled or matches
            raise ElementNotFoundError("%r matches %d elements of job %s (%s): give more of the key"
                                       % (name, len(found), self.job.id, ", ".join(e.key for e in found[:5])))
        raise ElementNotFoundError(
            "job %s has no element %r: name one by its key (or 4+ leading characters), its exact parameters "
            "as `kubeface status` shows them (e.g. %r), or @N for the N-th element of the grid"
            % (self.job.id, name, elements[0].label if elements else "x=1"))
