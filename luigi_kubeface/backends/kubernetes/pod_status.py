"""What a pod's status means for its attempt: a pure function from a pod (JSON dict) to an end.

Each state the pod can be in maps to one action, with the words a user needs: retry it (evicted,
preempted, node lost: not the element's fault), fail the element (out of memory, no node fits,
deadline), stop the job (the image cannot be pulled: every pod would fail alike), or wait.
"""

import re
from dataclasses import dataclass, replace
from typing import Optional

from ..attempts import AttemptEnd
from .memory_growth import can_grow, next_limit
from .pod_spec import SPOT_SELECTOR

_IMAGE_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
_CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
# What a runtime's transport says when containerd restarts or stalls under a start: seen on a real node.
_RUNTIME_HICCUP = re.compile(
    r"error reading from server|connection refused|transport is closing|"
    r"context deadline exceeded|code = Unavailable|: EOF\b",
    re.I,
)
# Pod-level reasons of a failed pod that say the node or the cluster stopped it, not the element.
_INTERRUPTIONS = {
    "Evicted",
    "Preempting",
    "NodeLost",
    "Shutdown",
    "NodeShutdown",
    "Terminated",
    "UnexpectedAdmissionError",
    "NodeAffinity",
    "OutOfcpu",
    "OutOfmemory",
    "OutOfpods",
}


@dataclass(frozen=True)
class PodEnd:
    """What the pod's status says of its attempt: the AttemptEnd, less what only the backend knows (the attempt
    id, the log tail, the placement: attempt_end fills them in), and fetch_log when the runner may not have
    recorded the log. The end's fields read through (pod_end(...).reason)."""

    end: AttemptEnd
    fetch_log: bool = False

    def __getattr__(self, name):
        if name == "end":  # not set yet (copy, unpickling): no end to read through to
            raise AttributeError(name)
        return getattr(self.end, name)

    def attempt_end(self, attempt: str, log_tail: str, placement: dict) -> AttemptEnd:
        return replace(self.end, attempt=attempt, log_tail=log_tail, placement=placement)


def _ended(exit_code: Optional[int], reason: str, fetch_log: bool = False, **fields) -> PodEnd:
    return PodEnd(AttemptEnd(attempt="", exit_code=exit_code, reason=reason, **fields), fetch_log=fetch_log)


def pod_placement(pod):
    """What the pod's attempt had, for the master's record: its memory limit and whether it ran on spot nodes."""
    placement = {"spot": (pod.get("spec") or {}).get("nodeSelector", {}).get(SPOT_SELECTOR) == "true"}
    if pod_memory_limit(pod):
        placement["memory_limit"] = pod_memory_limit(pod)
    return placement


def pod_memory_limit(pod):
    """The memory limit the pod's container had ('' if none is shown)."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return ((containers[0].get("resources") or {}).get("limits") or {}).get("memory", "")


def _container(pod):
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _condition(pod, kind):
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def pod_end(pod, pending_seconds, settings, held_seconds=None):
    """The end of the pod's attempt, or None while it is still on its way (pending or running).

    held_seconds, given while other pods of the job run: how long the job has made no progress (no
    pod of it started or ended). A pod short of capacity that those pods hold is back pressure, not
    a failure, until no progress for element_timeout + unschedulable_patience (by then every
    running pod must have ended).
    """
    status = pod.get("status") or {}
    phase = status.get("phase")
    container = _container(pod)
    if (pod.get("metadata") or {}).get("deletionTimestamp"):  # whatever its phase: someone else deletes it
        disruption = _condition(pod, "DisruptionTarget")
        if disruption and disruption.get("status") == "True":  # the Eviction API (a drain, the autoscaler), preemption
            return _ended(
                None,
                "the pod is being evicted by the cluster (%s)" % _disruption(pod),
                error_type="PodEvicted",
                interrupted=True,
            )
        return _ended(
            None,
            "the pod is being deleted by the cluster (%s)" % _disruption(pod),
            error_type="PodDeleted",
            interrupted=True,
        )
    if phase == "Succeeded":
        return _ended(0, "the pod succeeded")
    if phase == "Failed":
        return _failed(pod, status, container, settings)
    if phase == "Unknown":
        return _ended(
            None,
            "the pod's node stopped reporting (phase Unknown): the node was lost",
            error_type="NodeLost",
            interrupted=True,
        )
    if phase == "Pending" or phase is None:
        return _pending(pod, container, pending_seconds, settings, held_seconds)
    return None


def _failed(pod, status, container, settings):
    reason, message = status.get("reason") or "", status.get("message") or ""
    if reason == "DeadlineExceeded":
        return _ended(
            None,
            "the pod ran longer than element_timeout=%gs (its activeDeadlineSeconds) and was "
            "stopped; raise [kubeface] element_timeout if elements need longer" % settings.element_timeout,
            error_type="Timeout",
        )
    disruption = _condition(pod, "DisruptionTarget")
    if reason in _INTERRUPTIONS or (disruption and disruption.get("status") == "True"):
        why = reason or disruption.get("reason", "")
        return _ended(
            None,
            "the pod was stopped by the cluster (%s: %s)" % (why, message or (disruption or {}).get("message", "")),
            error_type="PodEvicted",
            interrupted=True,
        )
    terminated = (container.get("state") or {}).get("terminated") or {}
    if terminated.get("reason") == "OOMKilled":
        limit = pod_memory_limit(pod) or settings.memory_limit or settings.memory_request
        if can_grow(settings, limit):
            return _ended(
                terminated.get("exitCode"),
                "the pod ran out of memory with a limit of %s and was "
                "OOMKilled; its next attempt gets %s (oom_memory_factor = %g)"
                % (limit, next_limit(settings, limit), settings.oom_memory_factor),
                error_type="OutOfMemory",
                fetch_log=True,
                more_memory=True,
            )
        ceiling = " (max_memory_limit: it may grow no more)" if settings.oom_memory_factor > 1 else ""
        return _ended(
            terminated.get("exitCode"),
            "the pod ran out of memory: it used more than its memory "
            "limit of %s%s and was OOMKilled; raise [kubeface] memory_limit (and memory_request)%s"
            % (limit, ceiling, ", or max_memory_limit" if ceiling else ""),
            error_type="OutOfMemory",
            retryable=False,
            fetch_log=True,
        )
    if "exitCode" in terminated:
        code = terminated["exitCode"]
        words = "the container exited with code %d" % code
        if code == 137:
            words += " (killed by SIGKILL: out of memory, or killed from outside)"
        return _ended(code, words, fetch_log=code not in (0, 1, 2))  # 1 and 2: the runner wrote a record
    return _ended(
        None,
        "the pod failed before its container ran (%s)" % (message or reason or "no reason given"),
        error_type="PodFailed",
    )


def _disruption(pod):
    condition = _condition(pod, "DisruptionTarget")
    if condition is not None:
        return "%s: %s" % (condition.get("reason"), condition.get("message"))
    return "no reason given"


def holds_room(pod):
    """Whether a pod of the job holds a node's room: Running, or bound to a node and still starting (a slow
    image pull or a loaded node). Pods queued behind it then wait for it, not unschedulable_patience."""
    phase = (pod.get("status") or {}).get("phase")
    bound = phase in ("Pending", None) and bool((pod.get("spec") or {}).get("nodeName"))
    return (phase == "Running" or bound) and not (pod.get("metadata") or {}).get("deletionTimestamp")


def short_of_capacity(pod):
    """Unschedulable only for want of free capacity on some node (cpu, memory, pod slots): may fit later."""
    scheduled = _condition(pod, "PodScheduled")
    if not (scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"):
        return False
    return _capacity_only_on_some_node(scheduled.get("message") or "")


def tally(seen, kept, doomed, node_lost_timeout, now):
    """(pods that count against the cap, pods not yet bound to a node, whether to hold back: a few pending for
    capacity, the autoscaler's cue) of the followed pods seen; a deleted pod's end of counting goes in doomed."""
    count = unbound = short = running = 0
    for name, pod in seen.items():
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            doomed.setdefault(name, now + (meta.get("deletionGracePeriodSeconds") or 0) + node_lost_timeout)
        if name in kept or doomed.get(name, now + 1) <= now:
            continue
        count += 1
        if status.get("phase") == "Running":
            running += 1
        elif status.get("phase") in ("Pending", None) and not (pod.get("spec") or {}).get("nodeName"):
            unbound += 1
            short += short_of_capacity(pod)
    return count, unbound, short >= 1 + running // 10


def waits_for_secret(pod, secret_name):
    """The pod waits for the job's Secret (CreateContainerConfigError naming it): someone deleted it mid-job,
    which is not a setting to fix: the backend creates it again."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CreateContainerConfigError" and secret_name in (waiting.get("message") or ""):
            return True
    return False


def _capacity_only_on_some_node(message):
    """'0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint ...': some node lacks only room."""
    reasons = message.split("preemption:")[0].partition(":")[2]
    return any(_CAPACITY.match(part.strip().rstrip(".")) for part in reasons.split(","))


_CAPACITY = re.compile(r"^\d+ (Insufficient \S+|Too many pods)$")


def _pending(pod, container, pending_seconds, settings, held_seconds=None):
    """A pending pod's end: its container cannot start, its node never starts it, or no node has room; else None."""
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason, message = waiting.get("reason") or "", waiting.get("message") or ""
    end = _waiting_error(reason, message, settings)
    if end is None:
        end = _not_started(pod, container, reason, pending_seconds, settings)
    if end is None:
        end = _unschedulable(pod, pending_seconds, settings, held_seconds)
    return end


def _waiting_error(reason, message, settings):
    """The container waits on what no retry fixes (the image, the settings) or on a runtime hiccup (run again)."""
    if reason in _IMAGE_ERRORS:
        return _ended(
            None,
            "the image %r cannot be pulled (%s: %s): check [kubeface] image, that the image was "
            "pushed, and that the cluster's nodes may pull from its registry"
            % (settings.image, reason, message or "no message"),
            error_type="ImagePullError",
            retryable=False,
            fatal=True,
        )
    if reason in _CONFIG_ERRORS and "runAsNonRoot" in message:
        return _ended(
            None,
            "the image runs as root, and pods never do (%s: %s): give the image a non-root user "
            "(images/Dockerfile has `USER 65532:65532`), or set [kubeface] run_as_user to a non-root uid"
            % (reason, message),
            error_type="ContainerConfigError",
            retryable=False,
            fatal=True,
        )
    if reason in _CONFIG_ERRORS and _RUNTIME_HICCUP.search(message):
        # The node's container runtime failed or restarted while it started the container: not the settings.
        return _ended(
            None,
            "the node's container runtime failed while it started the pod (%s: %s): run again" % (reason, message),
            error_type="RuntimeError",
            interrupted=True,
        )
    if reason in _CONFIG_ERRORS:
        return _ended(
            None,
            "the pod's container cannot be created (%s: %s): check the pod settings in "
            "[kubeface] (env, secrets, service_account)" % (reason, message or "no message"),
            error_type="ContainerConfigError",
            retryable=False,
            fatal=True,
        )
    return None


def _not_started(pod, container, reason, pending_seconds, settings):
    """The pod's node has it but does not start it: a sandbox it keeps failing to make, or no word at all."""
    scheduled = _condition(pod, "PodScheduled")
    if reason == "ContainerCreating" and pending_seconds > settings.unschedulable_patience + settings.node_lost_timeout:
        # The node keeps failing to make the pod's sandbox (its events say why, e.g. FailedCreatePodSandBox).
        return _ended(
            None,
            "node %s could not create the pod's container for %.0fs (still ContainerCreating): "
            "`kubectl describe pod %s` shows the node's errors"
            % ((pod.get("spec") or {}).get("nodeName"), pending_seconds, (pod.get("metadata") or {}).get("name", "")),
            error_type="PodNotStarted",
            interrupted=True,
        )
    if (
        scheduled
        and scheduled.get("status") == "True"
        and not container  # the node never reported on it
        and pending_seconds > settings.unschedulable_patience + settings.node_lost_timeout
    ):
        return _ended(
            None,
            "the pod was bound to node %s but the node did not start it for %.0fs"
            % ((pod.get("spec") or {}).get("nodeName"), pending_seconds),
            error_type="PodNotStarted",
            interrupted=True,
        )
    return None


def _unschedulable(pod, pending_seconds, settings, held_seconds):
    """No node has room for the pod: back pressure while the job's own pods hold it, else unschedulable_patience."""
    scheduled = _condition(pod, "PodScheduled")
    if held_seconds is not None and short_of_capacity(pod):
        if held_seconds <= settings.element_timeout + settings.unschedulable_patience:
            return None  # the job's own pods fill the cluster: wait for one to end
        return _ended(
            None,
            "no node had room for the pod while the job made no progress for %.0fs "
            "(element_timeout + unschedulable_patience): %s. Lower [kubeface] max_in_flight or "
            "cpu_request, or add nodes" % (held_seconds, scheduled.get("message")),
            error_type="Unschedulable",
            retryable=False,
        )
    if (
        scheduled
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
        and pending_seconds > settings.unschedulable_patience
    ):
        return _ended(
            None,
            "no node could run the pod for %.0fs (unschedulable_patience): %s. Lower [kubeface] "
            "cpu_request, memory_request or gpus, check node_selector and tolerations, or add nodes "
            "that fit" % (pending_seconds, scheduled.get("message") or "the scheduler gave no reason"),
            error_type="Unschedulable",
            retryable=False,
        )
    return None
