"""What a run does with an attempt that ended: judge it, charge it, record it, then succeed, requeue, retry
or fail the element for good. The loop (engine.py) only notices the end; the decisions are judge.py's.

AttemptEnds is the part of JobRun (engine.py) that carries out those steps: its methods read and change
the run's state (the queues, the attempts in flight, the counters, the report), which JobRun sets up.
"""

import bisect
import heapq
import logging
import time

from ..errors import CorruptBlobError
from .judge import RETRY, STOP, Requeue, Succeeded, after_failure, judge, master_account, retry_delay

log = logging.getLogger(__name__)


class AttemptEnds:
    """JobRun's steps for an attempt that ended (timed out, cancelled as a sibling, or reported by the backend)."""

    def on_end(self, flight, end=None, timed_out=False):
        """One attempt ended; with speculation its sibling may still run, and the first result wins."""
        key = flight.element.key
        siblings = self.siblings(flight)
        if siblings and not self.store.has_result(key, self.versions):
            self.charge(flight, "speculated")  # the other attempt of this element decides
            log.info("attempt %s of element %s ended without a result; its sibling still runs", flight.attempt, key)
            return
        verdict = self.verdict(flight, end, timed_out)
        if isinstance(verdict, Succeeded):
            self.charge(flight, "succeeded")
            self.on_success(flight, siblings)
        elif isinstance(verdict, Requeue):
            self.charge(flight, verdict.charged_as)
            self.requeue(flight, verdict, end)
        else:
            self.on_failure(flight, verdict, end)

    def siblings(self, flight):
        """The other attempts of flight's element still in flight: only an element given a backup has any."""
        key = flight.element.key
        if key not in self.backed_up:
            return set()
        return {a for a, f in self.in_flight.items() if f.element.key == key and a != flight.attempt}

    def verdict(self, flight, end, timed_out):
        """Read what storage holds of the attempt and judge it (one read per result: never an unchecked blob)."""
        key = flight.element.key
        checked, refused, record = False, None, None
        try:  # also after a timeout: the result may be written, the exit late
            whole = bool(self.versions.get(key))  # on_success deletes the other versions' results
            checked = self.store.check_result(key, self.versions, whole=whole)
        except CorruptBlobError as error:  # moved aside by check_result: this element runs again
            refused = error
        if not checked and not timed_out:
            record = self.store.record(key, flight.attempt)
        return judge(
            end,
            record,
            self.settings,
            checked=checked,
            refused=refused,
            timed_out=timed_out,
            interruptions=self.interruptions[key],
        )

    def write_account(self, flight, verdict, end):
        """Write the master's record of the attempt, where judge.master_account says there is one."""
        placement = dict(end.placement) if end is not None else {}  # memory limit, spot: for the master's record
        written = master_account(verdict, flight.element.key, flight.attempt, self.account(flight), placement)
        if written is not None:
            record, if_absent = written
            self.store.write_record(flight.element.key, flight.attempt, record, if_absent=if_absent)

    def on_success(self, flight, siblings):
        key = flight.element.key
        self.progress.succeeded += 1
        if key in self.versions:
            self.store.drop_other_versions(key, self.versions)
        bisect.insort(self.durations, self.clock() - flight.started)
        for loser in siblings:  # the account first: a runner stopped by SIGTERM never writes over it
            other = self.in_flight.pop(loser, None)
            account = self.charge(other, "speculated") if other is not None else {}
            self.store.write_cancelled(key, loser, "another attempt of this element finished first", **account)
            self.backend.cancel(loser)

    def requeue(self, flight, verdict, end=None):
        """Interrupted (not the element's fault), or out of memory with more to come: run it again now, not
        counted as a retry."""
        element = flight.element
        if verdict.more_memory:
            self.out_of_memory[element.key] += 1
        else:
            self.interruptions[element.key] += 1
        self.write_account(flight, verdict, end)
        what = "ran out of memory" if verdict.more_memory else "was interrupted"
        log.info("element %s attempt %d %s (%s); running it again", element.key, flight.number, what, verdict.reason)
        self.todo.appendleft(element)

    def on_failure(self, flight, verdict, end=None):
        element, failure = flight.element, verdict.failure
        self.write_account(flight, verdict, end)
        step = after_failure(failure, self.failed_attempts[element.key], self.settings)
        self.charge(flight, "retried" if step == RETRY else "failed")
        if step == RETRY:
            self.retry(flight, failure)
        else:
            self.fail_for_good(element, failure)
        if step == STOP:
            self.report.stopped = "%s: %s" % (failure.error_type, failure.message)

    def retry(self, flight, failure):
        key = flight.element.key
        self.failed_attempts[key] += 1
        delay = retry_delay(self.failed_attempts[key], self.settings)
        self.progress.retried += 1
        heapq.heappush(self.retry_at, (self.clock() + delay, next(self.sequence), flight.element))
        log.info("element %s attempt %d failed (%s); retrying in %.1fs", key, flight.number, failure.error_type, delay)

    def fail_for_good(self, element, failure):
        self.report.failures[element.key] = failure
        self.progress.failed += 1
        log.warning(
            "element %s (%s) failed for good: %s: %s", element.key, element.label, failure.error_type, failure.message
        )

    def account(self, flight):
        """What the master records of an attempt it ended or saw end: its resources and wall-clock times."""
        now, wall = self.clock(), time.time() - self.clock()  # records hold wall-clock times, never the engine's
        began = flight.began if flight.began is not None else self.backend.started(flight.attempt, flight.started)
        seconds = max(0.0, now - began) if began is not None else 0.0  # never ran (a pod waiting for a node): 0
        return {
            "resources": self._request_of(flight).to_record(),
            "started_by_master": flight.started + wall,
            "started": (began if began is not None else now) + wall,
            "finished": now + wall,
            "duration": seconds,
        }

    def charge(self, flight, category):
        """Charge an attempt that ended to the run's cost (cost.py); returns its account for a master record."""
        account = self.account(flight)
        self.report.cost.charge(category, self._request_of(flight), account["duration"])
        return account

    def _request_of(self, flight):
        return flight.request or self.request  # an adopted attempt: the job's (its OOMs were an earlier run's)
