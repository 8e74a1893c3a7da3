"""Each attempt is its own bare pod on a Kubernetes cluster (GKE first, any cluster works).

The backend keeps the books between attempts and pods: it creates pods without ever letting more
than the cap exist (counted from what the API server reports, finished and terminating pods
included), waits out API outages and full quotas, learns every pod's fate from one watch per job,
deletes finished pods, and adopts the pods an earlier master of the same job left running
(leftover_pods.py: adoption at a master's start, cleanup at its close).
"""

import logging
import time
import uuid
from collections import deque

from ...errors import BackendError
from .. import AttemptEnd, Backend
from .api import CANCEL_GRACE, KubeApi
from .api_errors import Backoff, describe, is_transient, quota_never_fits, retried
from .leftover_pods import FollowedPod, LeftoverPods
from .namespace_share import NamespaceShare
from .pod_spec import RUN_LABEL, build_pod, build_secret, job_selector, pod_name, secret_name
from .pod_status import holds_room, pod_end, pod_placement, tally, waits_for_secret
from .sending import ROUND, Sender
from .watch import PodWatch

log = logging.getLogger(__name__)

_UNSEEN_LIMIT = 300.0  # a created pod the watch never showed is lost after this (watch healthy meanwhile)
_UNBOUND_LIMIT = 20  # pods created and not yet placed by the scheduler: create more once it catches up


class KubernetesBackend(LeftoverPods, Backend):
    timeout_slack = 60.0  # element_timeout runs from launch in the engine; a pod's deadline from its start on a node

    def __init__(self, settings, api=None):
        self.settings = settings
        self.api = api or KubeApi(settings)
        self.api.check_namespace()
        self.api.check_permissions()
        self.job_url = None
        self.watch = None
        self._pods = {}  # attempt -> FollowedPod, for attempts the engine follows
        self._queue = deque()  # attempts whose pod is not created yet (cap reached or API trouble)
        self._deletes = {}  # pod name -> grace seconds, sent as soon as the API server takes them
        self._kept = set()  # failed pods kept for debugging: they no longer count toward the cap
        self._ended = []  # ends found while creating (pod refused)
        self._retry_at = 0.0  # creates and deletes wait for the API server until then
        self._backoff = Backoff()  # the API's one retry policy; never gives up while pods run
        self._secret = None  # the job's Secret body, once created
        self.sender = Sender()  # a round's creates and deletes, side by side
        self.run_id = uuid.uuid4().hex[:16]  # this master's pods carry it (RUN_LABEL)
        self._ours = set()  # names of the pods this master created or adopted: the only ones it counts
        self._doomed = {}  # pod name -> monotonic time after which a deleted pod no longer counts
        self._foreign = set()  # pods with the job's labels that no master of this job created, once logged
        self._progress_at = time.monotonic()  # last time a pod of the job started or ended
        self._unlisted = False  # on the way out, this master's pods could not be listed
        self._cut_short = False  # a pod's create request went out and never answered
        self._secret_restored_at = 0.0
        # namespace_max_pods: this master's room in the namespace, shared with every other master's jobs
        self.share = (
            NamespaceShare(self.api, settings.namespace_max_pods, self.run_id) if settings.namespace_max_pods else None
        )

    def started(self, attempt, launched):
        """Monotonic time the attempt's pod started running, or None while it waits for a slot or a node.

        The engine's element_timeout runs from here: an attempt whose pod never ran never times out
        (pending pods have their own bounds, in pod_status).
        """
        pod = self._pods.get(attempt)
        return pod.running_since if pod is not None else None

    def wait(self, seconds):
        """Until a pod of the job ended (the watch says so), at most seconds: its slot is refilled at once."""
        if self.watch is None:
            time.sleep(seconds)
        else:
            self.watch.wait_ended(seconds)

    @property
    def leaves_attempts_running(self):
        return self.settings.leave_pods_on_exit

    # -- the Backend protocol ---------------------------------------------------------------

    def launch(self, spec):
        self._follow(spec.job_url)
        if spec.secret_env and self._secret is None:
            self._apply_secret(build_secret(spec.job_url, spec.secret_env))
        body = build_pod(spec, self.settings)
        body["metadata"]["labels"][RUN_LABEL] = self.run_id
        self._pods[spec.attempt] = FollowedPod(pod_name(spec), body)
        self._queue.append(spec.attempt)  # created in the next poll, with the round's others (sending.py)

    def poll(self):
        self._send_deletes()
        self._create_queued()
        ended, self._ended = self._ended, []
        if self.watch is None:
            return ended
        now = time.monotonic()
        followed = {p.name: attempt for attempt, p in self._pods.items() if p.created}
        seen = self.watch.snapshot()
        pods = {name: seen.get(name) for name in followed}
        vanished = self.watch.take_vanished() & set(followed)
        held = self._held_seconds(now)
        for name, attempt in followed.items():
            end = self._end_of(attempt, self._pods[attempt], pods.get(name), name in vanished, now, held)
            if end is not None:
                del self._pods[attempt]
                ended.append(end)
                self._progress_at = now
        self._log_foreign()
        return ended

    def cancel(self, attempt, send=True):
        pod = self._pods.pop(attempt, None)
        if pod is not None and (pod.created or pod.sent):  # sent: a create cut short may have made it
            self._cut_short |= not pod.created
            self._deletes[pod.name] = CANCEL_GRACE
            if send:
                self._send_deletes()

    # -- the books --------------------------------------------------------------------------

    def _follow(self, job_url):
        if self.watch is None:
            self.job_url = job_url
            self.watch = PodWatch(self.api, job_selector(job_url)).start()
        elif job_url != self.job_url:
            raise BackendError("a Kubernetes backend serves one job; open another for job %s" % job_url)

    def _existing(self):
        """Pods of this job that exist now and count against the cap, and whether to hold back.

        Counted: pods this master created or adopted (not pods of someone else with the job's labels),
        finished ones until deleted, deleted ones until their grace period and node_lost_timeout have
        passed (a pod stuck Terminating on a lost node can no longer store anything new). Hold back
        (back pressure) while pods wait for room the job's own pods hold, or for the scheduler.
        """
        seen = {name: pod for name, pod in self.watch.snapshot().items() if name in self._ours}
        count, unbound, held = tally(seen, self._kept, self._doomed, self.settings.node_lost_timeout, time.monotonic())
        unseen = sum(1 for p in self._pods.values() if p.created and p.name not in seen)
        return count + unseen, held or unbound + unseen >= _UNBOUND_LIMIT, unbound + unseen

    def _held_seconds(self, now):
        """Seconds without progress while pods of the job hold the room (pod_status.holds_room), else None."""
        if not any(holds_room(pod) and name in self._ours for name, pod in self.watch.snapshot().items()):
            return None
        return now - self.watch.fresh_since(self._progress_at) if self.watch.healthy else 0.0

    def _create_queued(self):
        while self._queue and time.monotonic() >= self._retry_at:
            batch = self._next_round()
            if not batch:
                return
            errors = self.sender.send([lambda body=pod.body: self.api.create_pod(body) for _, pod in batch])
            again = []
            for (attempt, pod), error in zip(batch, errors):
                if error is None or getattr(error, "status", None) == 409:  # 409: an earlier try did create it
                    pod.created, pod.since = True, time.monotonic()
                    self._api_ok()
                elif is_transient(error):
                    again.append(attempt)
                    self._wait_for_api("creating pods", error)
                else:
                    del self._pods[attempt]
                    quota = quota_never_fits(error)
                    self._ended.append(
                        AttemptEnd(
                            attempt=attempt,
                            exit_code=None,
                            reason=quota
                            or "Kubernetes refused the pod: %s. Fix the [kubeface] pod settings "
                            "(namespace, resources, service_account) or the master's permissions"
                            % describe(error),
                            error_type="QuotaTooSmall" if quota else "PodRejected",
                            retryable=False,
                            fatal=True,
                        )
                    )
            self._queue.extendleft(reversed(again))  # first in line again, in their order

    def _next_round(self):
        """The queued attempts whose pods fit now (the cap, the scheduler's pace, the namespace's share), at most ROUND."""
        existing, held, unplaced = self._existing()
        room = 0 if held else min(self.settings.cap - existing, _UNBOUND_LIMIT - unplaced, ROUND)
        batch = []
        while self._queue and len(batch) < room:
            attempt = self._queue[0]
            pod = self._pods.get(attempt)
            if pod is None:  # cancelled before its pod was created
                self._queue.popleft()
                continue
            if not self._share_allows(wants=existing + len(batch) + len(self._queue)):
                break  # the namespace's cap across jobs, or this master's fair share of it, is reached
            self._queue.popleft()
            self._ours.add(pod.name)
            pod.sent = True
            batch.append((attempt, pod))
        return batch

    def _share_allows(self, wants):
        """namespace_max_pods: whether this master may create one more pod now (API trouble: wait, as creates do)."""
        if self.share is None:
            return True
        try:
            return self.share.take(wants)
        except Exception as error:  # noqa: BLE001 - sorted here
            if is_transient(error):
                self._wait_for_api("sharing the namespace's pods", error)
                return False
            raise BackendError(
                "namespace_max_pods: could not count the namespace's pods or renew this master's "
                "Lease: %s. Allow the master leases (docs/kubernetes-rbac.yaml) or set "
                "[kubeface] namespace_max_pods = 0" % describe(error)
            ) from None

    def _send_deletes(self, force=False):
        while self._deletes and (force or time.monotonic() >= self._retry_at):
            batch = list(self._deletes.items())[:ROUND]
            errors = self.sender.send(
                [lambda name=name, grace=grace: self.api.delete_pod(name, grace) for name, grace in batch]
            )
            for (name, grace), error in zip(batch, errors):
                if error is not None and is_transient(error):
                    self._wait_for_api("deleting pods", error)
                    continue
                if error is not None:
                    log.warning("could not delete pod %s: %s", name, describe(error))
                del self._deletes[name]
                self._doomed.setdefault(name, time.monotonic() + grace + self.settings.node_lost_timeout)
                self._api_ok()
            if any(error is not None and is_transient(error) for error in errors):
                return

    def _wait_for_api(self, doing, error):
        if self._backoff.since is None:
            log.warning("%s waits: %s; retrying with backoff", doing, describe(error))
        self._retry_at = time.monotonic() + self._backoff.failed()

    def _api_ok(self):
        lasted = self._backoff.succeeded()
        if lasted is not None:
            log.info("the API server takes requests again after %.0fs", lasted)

    def _apply_secret(self, body):
        try:
            retried(lambda: self.api.apply_secret(body))
        except Exception as error:  # noqa: BLE001 - not transient, or the API server stayed away
            raise BackendError(
                "could not create the job's Secret %s: %s" % (secret_name(self.job_url), describe(error))
            ) from None
        self._secret = body

    def _restore_secret(self):
        """Create the job's Secret again (the kubelet retries the waiting pods), at most every few seconds."""
        if time.monotonic() - self._secret_restored_at < 5:
            return
        self._secret_restored_at = time.monotonic()
        name = self._secret["metadata"]["name"]
        try:
            self.api.apply_secret(self._secret)
            log.warning(
                "the job's Secret %s was deleted while the job ran (`kubeface cleanup --force`, or a "
                "person): created it again; its pods start once the kubelet retries",
                name,
            )
        except Exception as error:  # noqa: BLE001 - retried at the next look
            log.warning(
                "the job's Secret %s was deleted while the job ran and could not be created again (%s): "
                "retrying; the master needs create on secrets in namespace %s",
                name,
                describe(error),
                self.settings.namespace,
            )

    def _end_of(self, attempt, followed, pod, vanished, now, held=None):
        """The AttemptEnd of a followed pod, or None while it runs; disposes of the ended pod."""
        if pod is None:
            if vanished:
                return AttemptEnd(
                    attempt=attempt,
                    exit_code=None,
                    reason="the pod was deleted before it finished (by a person, a controller, or its "
                    "namespace's deletion)",
                    error_type="PodDeleted",
                    interrupted=True,
                )
            if now - followed.since > _UNSEEN_LIMIT and self.watch.healthy:
                return AttemptEnd(
                    attempt=attempt,
                    exit_code=None,
                    reason="the pod was created but the API server never showed it",
                    error_type="PodLost",
                    interrupted=True,
                )
            return None
        deleting = bool(pod["metadata"].get("deletionTimestamp"))  # by someone else (eviction, node lost)
        if not deleting and self._secret is not None and waits_for_secret(pod, self._secret["metadata"]["name"]):
            self._restore_secret()
            return None
        # Time pending counts only while the watch is healthy: during an outage nothing is seen to move.
        pending = now - self.watch.fresh_since(followed.since) if self.watch.healthy else 0.0
        end = pod_end(pod, pending, self.settings, held)
        if followed.running_since is None and (pod.get("status") or {}).get("phase") != "Pending":
            followed.running_since = now
            self._progress_at = now
        if end is None:
            return None
        tail = self.api.pod_log_tail(followed.name) if end.fetch_log else ""
        if end.exit_code != 0 and self.settings.keep_failed_pods and not deleting:
            self._kept.add(followed.name)
            log.info(
                "kept failed pod %s for debugging (kubectl describe pod -n %s %s)",
                followed.name,
                self.settings.namespace,
                followed.name,
            )
        else:
            self._deletes[followed.name] = 0
        return end.attempt_end(attempt, log_tail=tail, placement=pod_placement(pod))
