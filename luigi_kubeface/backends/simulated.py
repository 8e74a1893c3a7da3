"""An in-process backend on a virtual clock: the engine's fake compute, for tests and benchmarks.

Each attempt runs the task runner's own code (function, input, write-once result, outcome record)
in this process when its simulated duration has passed on the backend's clock. Pass the backend's
`clock` and `sleep` to `run_job`: an hour of attempts then takes as long as the Python calls.
"""

import json

from .. import naming, runner
from ..storage import open_storage
from . import AttemptEnd, Backend


class SimulatedBackend(Backend):
    """duration(spec) -> seconds of virtual time for that attempt (0: instant).

    `launched`, `cancelled` and `timeline` (virtual time, attempts running) record what happened,
    so tests can assert on outcomes and benchmarks can measure slot use.
    """

    def __init__(self, settings=None, duration=None):
        self.settings = settings
        self.duration = duration or (lambda spec: 0.0)
        self.now = 0.0
        self.launched = []  # AttemptSpec, in launch order
        self.cancelled = []  # attempt ids
        self.timeline = [(0.0, 0)]  # (virtual time, attempts running) after each change
        self._running = {}  # attempt -> (end time, spec)
        self._storages = {}

    def clock(self):
        return self.now

    def sleep(self, seconds):
        """Virtual sleep that wakes early when an attempt ends, as a watch on real pods would."""
        ends = [end for end, _ in self._running.values()]
        self.now = min([self.now + seconds] + [max(end, self.now) for end in ends])

    def wait(self, seconds):
        self.sleep(seconds)

    def launch(self, spec):
        self.launched.append(spec)
        self._running[spec.attempt] = (self.now + float(self.duration(spec)), spec)
        self._mark()

    def poll(self):
        ended = []
        for attempt, (end, spec) in list(self._running.items()):
            if end > self.now:
                continue
            del self._running[attempt]
            storage = self._storage(spec.job_url)
            key = runner.signing_key_from_env(dict(spec.secret_env))  # as a process would get it
            code, record = runner.execute_attempt(storage, spec.element, attempt, key)
            storage.write(naming.attempt_record_key(spec.element, attempt), json.dumps(record).encode())
            ended.append(AttemptEnd(attempt, code, "the attempt exited with code %d" % code))
        if ended:
            self._mark()
        return ended

    def cancel(self, attempt):
        if self._running.pop(attempt, None) is not None:
            self.cancelled.append(attempt)
            self._mark()

    def close(self):
        for attempt in list(self._running):
            self.cancel(attempt)

    def _storage(self, url):
        if url not in self._storages:
            self._storages[url] = open_storage(url)
        return self._storages[url]

    def _mark(self):
        if self.timeline[-1][0] == self.now:
            self.timeline[-1] = (self.now, len(self._running))
        else:
            self.timeline.append((self.now, len(self._running)))
