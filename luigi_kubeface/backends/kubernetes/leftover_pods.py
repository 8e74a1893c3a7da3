"""The pods outside one master's lifetime: those an earlier master of the job left (adopted), those this one leaves.

KubernetesBackend's adoption and cleanup, apart from its launching and following (backend.py). A mixin: it
reads and fills the backend's books (_pods, _deletes, _kept, _ours, the watch) and sends deletes its way.
"""

import json
import logging
import time
from dataclasses import dataclass, field

from ...errors import BackendError
from .api import CANCEL_GRACE
from .api_errors import describe
from .pod_spec import ATTEMPT_LABEL, ELEMENT_LABEL, RUN_LABEL, job_selector

log = logging.getLogger("luigi_kubeface.backends.kubernetes.backend")  # the backend's log, as before the split


@dataclass
class FollowedPod:
    """The backend's book on one attempt's pod: whether and when it was created, when it first ran."""

    name: str
    body: dict = field(repr=False)
    created: bool = False
    since: float = 0.0  # monotonic time of creation (or of adoption)
    sent: bool = False  # its create request went out: the pod may exist even if the call did not return
    running_since: float = None  # monotonic time it was first seen running (or ended)


class LeftoverPods:
    """adopt() at a master's start, close() at its end; the rest of the Backend protocol is KubernetesBackend's."""

    def adopt(self, job):
        """Pods an earlier master of this job left running: the engine follows them, no duplicates."""
        self._follow(job.url)
        if not self.watch.wait_synced(300):
            raise BackendError("could not list the pods of job %s for 300s: is the API server reachable?" % job.id)
        pods = list(self.watch.snapshot().values())
        live = {}
        for pod in sorted(pods, key=lambda p: p["metadata"]["labels"].get(ATTEMPT_LABEL, "")):
            meta, phase = pod["metadata"], (pod.get("status") or {}).get("phase")
            element, attempt = meta["labels"].get(ELEMENT_LABEL), meta["labels"].get(ATTEMPT_LABEL)
            if phase in ("Pending", "Running", None) and not meta.get("deletionTimestamp") and element and attempt:
                if element in live:  # a speculative duplicate: follow the newest only
                    self._deletes[self._pods.pop(live[element]).name] = CANCEL_GRACE
                live[element] = attempt
                self._pods[attempt] = FollowedPod(
                    meta["name"],
                    {},
                    created=True,
                    since=time.monotonic(),
                    running_since=time.monotonic() if phase == "Running" else None,
                )
                self._ours.add(meta["name"])
            elif phase == "Failed" and self.settings.keep_failed_pods:
                self._kept.add(meta["name"])
            elif phase in ("Succeeded", "Failed"):
                self._deletes[meta["name"]] = 0
                self._ours.add(meta["name"])
        if live:
            log.info("job %s: adopted %d pods left running by an earlier master", job.id, len(live))
        return {element: attempt for element, attempt in live.items()}

    def close(self):
        """Delete the pods still followed (unless asked to leave them) and the job's Secret."""
        leave = self.settings.leave_pods_on_exit
        for attempt in list(self._pods):
            if leave:
                self._pods.pop(attempt)
            else:
                self.cancel(attempt, send=False)  # sent below, side by side
        self._queue.clear()
        deadline = time.monotonic() + 60
        while self._deletes and time.monotonic() < deadline:
            self._send_deletes(force=True)
            if self._deletes:
                time.sleep(1)
        if not leave and self.watch is not None:
            self._delete_by_label(deadline)
        if self._deletes or self._unlisted:
            log.warning(
                "could not delete %d pods (%s); delete them with `kubectl delete pods -n %s -l %s`",
                len(self._deletes),
                ", ".join(sorted(self._deletes)[:5]),
                self.settings.namespace,
                self._run_selector(),
            )
        if self._secret is not None and not leave:
            try:
                self.api.delete_secret(self._secret["metadata"]["name"])
            except Exception as error:  # noqa: BLE001 - a leftover Secret is harmless and reported
                log.warning("could not delete Secret %s: %s", self._secret["metadata"]["name"], describe(error))
        if self.watch is not None:
            self.watch.stop()
            log.info("pod watch counts: %s", json.dumps(self.watch.counted(), sort_keys=True))
        if self.share is not None:
            self.share.close()
        self.sender.close()

    def _run_selector(self):
        return "%s,%s=%s" % (job_selector(self.job_url), RUN_LABEL, self.run_id)

    def _delete_by_label(self, deadline):
        """Pods of this master not known by name (a create cut short by Ctrl-C): found by RUN_LABEL."""
        for _ in range(2 if self._cut_short else 1):  # a create still being processed shows up a moment later
            try:
                pods, _ = self.api.list_pods(self._run_selector())
            except Exception as error:  # noqa: BLE001 - reported with the kubectl line below
                log.warning("could not list this master's pods: %s", describe(error))
                self._unlisted = True
                return
            for name, pod in pods.items():
                if not pod["metadata"].get("deletionTimestamp"):
                    self._deletes[name] = CANCEL_GRACE
            while self._deletes and time.monotonic() < deadline:
                self._send_deletes(force=True)
                if self._deletes:
                    time.sleep(1)
            if self._deletes or not self._cut_short:
                return
            time.sleep(2)

    def _log_foreign(self):
        foreign = {name for name in self.watch.snapshot() if name not in self._ours} - self._foreign
        if foreign:
            self._foreign |= foreign
            log.warning(
                "%d pods carry the labels of job %s but no master of this job created them (%s): they are "
                "not counted, followed nor deleted; remove them or their labels",
                len(foreign),
                self.job_url,
                ", ".join(sorted(foreign)[:5]),
            )
