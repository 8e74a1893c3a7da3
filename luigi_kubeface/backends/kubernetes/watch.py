"""The pods of one job as the API server last told: one list, then one watch, resumed forever.

The backend reads it through a small interface (snapshot, take_vanished, wait_synced, healthy,
fresh_since); the thread, its lock and its outage bookkeeping stay inside.
"""

import json
import logging
import threading
import time

from ...errors import BackendError
from .api_errors import Backoff, describe

log = logging.getLogger(__name__)


def watch_events(response):
    """Watch events as dicts, until the watch ends or its connection drops."""
    from kubernetes.watch.watch import iter_resp_lines

    try:
        for line in iter_resp_lines(response):
            if line:
                yield json.loads(line)
    finally:
        response.release_conn()


class GoneError(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class PodWatch:
    """On `410 Gone` it lists again; on a dropped connection or an API server outage it waits (the
    API's Backoff, never giving up: it is the job's only eyes) and resumes from the last
    resourceVersion, so no pod's end is missed."""

    def __init__(self, api, selector):
        self.api = api
        self.selector = selector
        self._pods = {}  # name -> pod dict
        self._vanished = set()  # names deleted since the last take_vanished()
        self._lock = threading.Lock()
        self._synced = threading.Event()  # the first list arrived
        self._ended = threading.Event()  # a pod ended or vanished since the last wait_ended()
        self._backoff = Backoff()  # its since: the first failed call of a running outage
        self._recovered_at = 0.0  # monotonic time the last outage ended: what was seen before is stale
        self._stop = threading.Event()
        self._response = None  # the open watch, closed by stop() so the thread ends at once
        self._thread = threading.Thread(target=self._run, name="kubeface-pod-watch", daemon=True)
        self.counts = {"lists": 0, "watches": 0, "gone": 0, "interrupted": 0}  # see counted()
        self.events = {}  # event type -> count

    # -- what the backend reads -------------------------------------------------------------

    def snapshot(self):
        """{pod name: pod} as last told (a copy: the watch goes on meanwhile)."""
        with self._lock:
            return dict(self._pods)

    def take_vanished(self):
        """Names of the pods deleted since the last call."""
        with self._lock:
            vanished, self._vanished = self._vanished, set()
        return vanished

    def wait_synced(self, timeout):
        """True once the first list arrived, False if it did not within timeout seconds."""
        return self._synced.wait(timeout=timeout)

    @property
    def healthy(self):
        """False during an outage: nothing is seen to move, so nothing may be judged by its stillness."""
        return self._backoff.since is None

    def counted(self):
        """What the watch did so far, by count: lists (the first one and each relist), watches opened
        (the server ends each after WATCH_SECONDS), 410 Gone, interruptions, and events by type."""
        with self._lock:
            return dict(self.counts, relists=max(self.counts["lists"] - 1, 0), events=dict(self.events))

    def wait_ended(self, timeout):
        """Block until a pod ended or vanished (its end is for the backend to read), at most timeout seconds;
        whether one did."""
        ended = self._ended.wait(timeout=timeout)
        self._ended.clear()
        return ended

    def fresh_since(self, since):
        """The later of since and the end of the last outage: what the watch saw before then is stale."""
        return max(since, self._recovered_at)

    # -- the thread -------------------------------------------------------------------------

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown() if hasattr(response, "shutdown") else response.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail; the thread ends anyway
                pass
        self._thread.join(timeout=10)

    def _relist(self):
        pods, version = self.api.list_pods(self.selector)
        with self._lock:
            self._vanished.update(set(self._pods) - set(pods))
            self._pods = pods
            self.counts["lists"] += 1
        self._synced.set()
        return version

    def _apply(self, event, version):
        kind, obj = event.get("type"), event.get("object") or {}
        with self._lock:
            self.events[kind] = self.events.get(kind, 0) + 1
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise GoneError()
            raise BackendError("pod watch error: %s" % obj.get("message"))
        version = (obj.get("metadata") or {}).get("resourceVersion") or version
        if kind == "BOOKMARK":
            return version
        name = obj["metadata"]["name"]
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(name, None)
                self._vanished.add(name)
            else:
                self._pods[name] = obj
        if kind == "DELETED" or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self._ended.set()
        return version

    def _run(self):
        from kubernetes.client.rest import ApiException

        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                started = time.monotonic()
                self._response = self.api.watch_pods(self.selector, version)
                if self._stop.is_set():
                    return
                self._connected()
                self.counts["watches"] += 1
                for event in watch_events(self._response):
                    version = self._apply(event, version)
                    if self._stop.is_set():
                        return
                if time.monotonic() - started < 1:  # a watch that ends at once must not spin
                    self._stop.wait(0.5)
            except GoneError:
                version = None
                self.counts["gone"] += 1
            except Exception as error:  # noqa: BLE001 - dropped connections, outages: wait and resume
                if isinstance(error, ApiException) and error.status == 410:
                    version = None
                    self.counts["gone"] += 1
                    continue
                if self._stop.is_set():
                    return
                self.counts["interrupted"] += 1
                self._wait(error)

    def _connected(self):
        lasted = self._backoff.succeeded()
        if lasted is not None:
            log.info("pod watch resumed after %.0fs", lasted)
            self._recovered_at = time.monotonic()

    def _wait(self, error):
        if self._backoff.since is None:
            log.warning("pod watch interrupted (%s); resuming", describe(error))
        self._stop.wait(self._backoff.failed())
