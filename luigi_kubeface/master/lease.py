"""One master per job: a lease in the job's storage prefix, renewed by a heartbeat, taken over once it lapses.

Two masters started on one job (two `luigi` commands, a cron overlapping a manual run) would
otherwise run every element twice, and on Kubernetes adopt and cancel each other's pods. The
lease (naming.LEASE) is only ever written by compare-and-swap on the blob's generation
(storage.write_if_generation: GCS if_generation_match, a locked rename locally), so of two masters
exactly one holds it. The holder renews it every lease_seconds / 3; a master that finds it held
waits, and takes it once it is released, once it was not renewed for lease_seconds, or at once
when its holder ran on this machine and its process is gone.

lease.json is in the bucket, so anyone who may write it could forge it. Each record is signed
with the job's key and carries a term, which every acquisition raises (at least to the time in
seconds). A waiting master treats a record that is not signed as no lease; a holder that finds
one, or a signed record of a lower (term, run) (an old one copied back), or none, puts its own back
and keeps running: only a signed record of a higher term means another master took the job over.
"""

import json
import logging
import os
import socket
import threading
import time

from ..bucket import layout as naming
from ..bucket.lease_record import read_lease, signed, verified  # noqa: F401 - read_lease: the lease's readers

log = logging.getLogger(__name__)


def _rank(holder):
    """What orders two signed records: the higher term (then run id) is the later acquisition."""
    term = holder.get("term")
    return (term if isinstance(term, (int, float)) else 0, str(holder.get("run", "")))


def _pid_gone(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, TypeError):
        return False
    return False


def lapsed(holder, now=None):
    """Why the holder no longer holds the lease ("" while it does): released, expired, or its process is gone."""
    if not holder:
        return "no lease"
    if holder.get("released"):
        return "released"
    now = time.time() if now is None else now
    seconds = float(holder.get("seconds") or 60)
    if now - float(holder.get("renewed") or 0) > seconds:
        return "not renewed for %.0fs" % (now - float(holder.get("renewed") or 0))
    if holder.get("host") == socket.gethostname() and _pid_gone(holder.get("pid")):
        return "its process %s is gone" % holder.get("pid")
    return ""


def describe(holder, now=None):
    """One line for `kubeface status`: who holds the lease and since when."""
    if not holder:
        return "no master holds this job"
    now = time.time() if now is None else now
    who = "run %s (%s, pid %s)" % (holder.get("run", "?"), holder.get("host", "?"), holder.get("pid", "?"))
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder.get("since") or 0)))
    why = lapsed(holder, now)
    if not why:
        return "held by %s since %s, renewed %.0fs ago" % (who, since, now - float(holder.get("renewed") or 0))
    return "free: last held by %s since %s (%s)" % (who, since, why)


class JobLease:
    """This master's hold on one job: acquire() before launching, renewed in the background, release() at the end."""

    def __init__(self, storage, seconds, run_id=None, now=time.time, clock=time.monotonic, key=None):
        self.storage, self.seconds = storage, float(seconds)
        self.key = key  # the job's key: records are signed and checked with it (None: unsigned, as before)
        self.term = 0
        self.run_id = run_id or naming.new_run_id()
        self._now, self._clock = now, clock
        self._generation = None
        self._renewed_at = None  # monotonic time of our last successful write
        self._lost = ""
        self._stop = threading.Event()
        self._thread = None
        self.since = None

    def _record(self, **extra):
        now = self._now()
        record = dict(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "run": self.run_id,
                "since": self.since or now,
                "renewed": now,
                "seconds": self.seconds,
                "term": self.term,
            },
            **extra,
        )
        return signed(record, self.key) if self.key is not None else record

    def _forged(self, holder):
        """Why a record found in lease.json is no master's ("" when it may be one's)."""
        if self.key is None or holder is None or verified(holder, self.key):
            return ""
        return "not signed by this job's key"

    def _next_term(self, holder):
        previous = _rank(holder)[0] if holder and not self._forged(holder) else 0
        return max(int(previous) + 1, int(self._now()))

    def _swap(self, generation, record):
        """Write by compare-and-swap; a retried write that did land (its reply lost) counts as ours."""
        if self.storage.write_if_generation(naming.LEASE, json.dumps(record, indent=1).encode(), generation):
            self._generation = self.storage.read_generation(naming.LEASE)[1]
            return True
        holder, current = read_lease(self.storage)
        if holder and holder.get("run") == self.run_id and holder.get("renewed") == record["renewed"]:
            self._generation = current
            return True
        return False

    def try_acquire(self):
        """Take the lease if it is free: None when taken, else the holder's record."""
        holder, generation = read_lease(self.storage)
        forged = self._forged(holder)
        if holder is not None and holder.get("run") != self.run_id and not lapsed(holder, self._now()) and not forged:
            return holder
        if forged:
            log.warning(
                "the job's lease.json is %s (forged in storage, or written by an earlier release): taking the lease",
                forged,
            )
        self.since = self._now()
        self.term = self._next_term(holder)
        if self._swap(generation, self._record()):
            self._renewed_at = self._clock()
            if holder and not holder.get("released"):
                log.warning(
                    "took over the job's lease from run %s (%s, pid %s): %s",
                    holder.get("run"),
                    holder.get("host"),
                    holder.get("pid"),
                    lapsed(holder, self._now()),
                )
            return None
        return read_lease(self.storage)[0] or {}

    def acquire(self, on_wait=None, sleep=time.sleep):
        """Block until this master holds the lease; on_wait(holder) is called on each look while another holds it.

        Whether the holder's clock agrees with ours or not, a lease whose record did not change for
        lease_seconds of our own clock has lapsed: a skewed clock cannot keep a dead master's lease alive.
        """
        seen, seen_at, waited = None, None, False
        while True:
            holder = self.try_acquire()
            if holder is None:
                self._start_heartbeat()
                return waited
            if holder != seen:
                seen, seen_at = holder, self._clock()
            elif self._clock() - seen_at > self.seconds:
                holder_now, generation = read_lease(self.storage)
                self.since, self.term = self._now(), self._next_term(holder_now)
                if holder_now == seen and self._swap(generation, self._record()):
                    self._renewed_at = self._clock()
                    log.warning(
                        "took over the job's lease from run %s: unchanged for %.0fs",
                        seen.get("run"),
                        self._clock() - seen_at,
                    )
                    self._start_heartbeat()
                    return waited
            if not waited:
                log.info(
                    "job is run by another master: %s; waiting for it (its results will be reused)",
                    describe(holder, self._now()),
                )
            waited = True
            if on_wait:
                on_wait(holder)
            sleep(min(max(self.seconds / 4, 0.05), 5.0))

    def _start_heartbeat(self):
        self._thread = threading.Thread(target=self._beat, name="kubeface-lease", daemon=True)
        self._thread.start()

    def _beat(self):
        while not self._stop.wait(self.seconds / 3):
            self.renew()

    def renew(self):
        """One heartbeat: keep the lease, or notice it was lost."""
        if self._lost:
            return
        try:
            if self._swap(self._generation, self._record()):
                self._renewed_at = self._clock()
                return
            holder, generation = read_lease(self.storage)
            why = self._not_a_takeover(holder)
            if why:
                log.warning("the job's lease.json was replaced by a record that is %s: putting this master's back", why)
                if self._swap(generation, self._record()):
                    self._renewed_at = self._clock()
                return  # a failed swap: the next beat looks again
            self._lost = "another master took the job over: %s" % describe(holder, self._now())
        except Exception as error:  # noqa: BLE001 - storage trouble: retried at the next beat
            log.warning("could not renew the job's lease: %s", error)
            if self._clock() - self._renewed_at > self.seconds:
                self._lost = "the lease could not be renewed for %.0fs (%s)" % (self.seconds, error)
        if self._lost:
            log.error("job lease lost: %s", self._lost)

    def _not_a_takeover(self, holder):
        """Why the record now in lease.json does not take the job from this master ("" when it does)."""
        if self.key is None:
            return ""
        if holder is None:
            return "gone (deleted)"
        if self._forged(holder):
            return self._forged(holder)
        if _rank(holder) <= _rank(self._record()):
            return "an older signed record (term %s) copied back" % holder.get("term")
        return ""

    @property
    def lost(self):
        """Why this master no longer holds the lease ("" while it does)."""
        return self._lost

    def release(self):
        """Stop the heartbeat and mark the lease free, so a waiting master starts at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._lost or self._generation is None:
            return
        try:
            if not self._swap(self._generation, self._record(released=self._now())):
                holder, generation = read_lease(self.storage)
                if self._not_a_takeover(holder):  # a forged record since the last beat: free the lease all the same
                    self._swap(generation, self._record(released=self._now()))
        except Exception as error:  # noqa: BLE001 - it lapses on its own after lease_seconds
            log.warning("could not release the job's lease (it lapses in %.0fs): %s", self.seconds, error)
