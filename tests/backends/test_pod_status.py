"""pod_status.pod_end as a table: each pod state it maps, and the end (or None: wait) it maps it to.

Pods are the API's JSON, cut to the fields pod_end reads. Settings: patience 60s for a node, 30s
for a lost node, a 2Gi memory limit.
"""

import pytest

from luigi_kubeface.backends.kubernetes.pod_status import holds_room, pod_end, short_of_capacity
from luigi_kubeface.settings import Settings

SETTINGS = Settings(
    backend="kubernetes",
    storage_root="gs://b/jobs",
    image="r/kubeface:1",
    memory_limit="2Gi",
    unschedulable_patience=60,
    node_lost_timeout=30,
    element_timeout=600,
)
NO_ROOM = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."
TAINTED = "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: gpu}."
SOME_ROOM = "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint {a: b}."


def pod(phase, reason=None, message=None, container=None, conditions=(), node=None, deleting=False):
    status = {"phase": phase} if phase else {}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if container is not None:
        status["containerStatuses"] = [{"name": "runner", "state": container}]
    if conditions:
        status["conditions"] = list(conditions)
    meta = {"name": "kf-job-abc-001-x", "deletionTimestamp": "2024-01-01T00:00:00Z"} if deleting else {"name": "p"}
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": status}


def exited(code, reason="Error"):
    return {"terminated": {"exitCode": code, "reason": reason}}


def waiting(reason, message="boom"):
    return {"waiting": {"reason": reason, "message": message}}


def unschedulable(message):
    return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}


SCHEDULED = {"type": "PodScheduled", "status": "True"}
DISRUPTED = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler", "message": "room"}

# (name, pod, pending seconds, held seconds, expected fields or None (still on its way), words in the reason)
ROWS = [
    (
        "succeeded",
        pod("Succeeded", container=exited(0, "Completed")),
        0,
        None,
        dict(exit_code=0, error_type="", retryable=True, fatal=False, interrupted=False, fetch_log=False),
        "succeeded",
    ),
    (
        "exit 1: the runner recorded an exception",
        pod("Failed", container=exited(1)),
        0,
        None,
        dict(exit_code=1, error_type="", retryable=True, fetch_log=False),
        "exited with code 1",
    ),
    (
        "exit 2: the runner recorded its own failure",
        pod("Failed", container=exited(2)),
        0,
        None,
        dict(exit_code=2, fetch_log=False),
        "exited with code 2",
    ),
    (
        "exit 3: the runner may have recorded nothing",
        pod("Failed", container=exited(3)),
        0,
        None,
        dict(exit_code=3, error_type="", retryable=True, fetch_log=True),
        "exited with code 3",
    ),
    (
        "exit 137 without OOMKilled: SIGKILL",
        pod("Failed", container=exited(137)),
        0,
        None,
        dict(exit_code=137, error_type="", retryable=True, fetch_log=True),
        "killed by SIGKILL",
    ),
    (
        "exit 137 OOMKilled",
        pod("Failed", container=exited(137, "OOMKilled")),
        0,
        None,
        dict(exit_code=137, error_type="OutOfMemory", retryable=False, fatal=False, fetch_log=True),
        "limit of 2Gi and was OOMKilled; raise [kubeface] memory_limit",
    ),
    (
        "deadline exceeded",
        pod("Failed", reason="DeadlineExceeded", container=exited(137)),
        0,
        None,
        dict(exit_code=None, error_type="Timeout", retryable=True, interrupted=False),
        "longer than element_timeout=600s",
    ),
    (
        "evicted",
        pod("Failed", reason="Evicted", message="low on memory", container=exited(137)),
        0,
        None,
        dict(exit_code=None, error_type="PodEvicted", interrupted=True, retryable=True),
        "Evicted: low on memory",
    ),
    (
        "preempted",
        pod("Failed", reason="Preempting"),
        0,
        None,
        dict(exit_code=None, error_type="PodEvicted", interrupted=True),
        "Preempting",
    ),
    (
        "node shut down",
        pod("Failed", reason="NodeShutdown", message="node is shutting down"),
        0,
        None,
        dict(error_type="PodEvicted", interrupted=True),
        "NodeShutdown",
    ),
    (
        "node out of cpu at admission",
        pod("Failed", reason="OutOfcpu"),
        0,
        None,
        dict(error_type="PodEvicted", interrupted=True),
        "OutOfcpu",
    ),
    (
        "disruption target with no pod reason",
        pod("Failed", container=exited(143), conditions=[DISRUPTED]),
        0,
        None,
        dict(exit_code=None, error_type="PodEvicted", interrupted=True),
        "PreemptionByScheduler",
    ),
    (
        "failed before its container ran",
        pod("Failed", message="admission refused"),
        0,
        None,
        dict(exit_code=None, error_type="PodFailed", retryable=True, interrupted=False),
        "admission refused",
    ),
    (
        "evicted by the cluster (Eviction API, preemption)",
        pod("Running", deleting=True, conditions=[DISRUPTED]),
        0,
        None,
        dict(exit_code=None, error_type="PodEvicted", interrupted=True, fetch_log=False),
        "PreemptionByScheduler: room",
    ),
    (
        "deleted by someone (node lost, kubectl delete)",
        pod("Running", deleting=True),
        0,
        None,
        dict(exit_code=None, error_type="PodDeleted", interrupted=True, fetch_log=False),
        "deleted by the cluster",
    ),
    (
        "deleted after it succeeded: retried, its result may be missing",
        pod("Succeeded", deleting=True),
        0,
        None,
        dict(exit_code=None, error_type="PodDeleted", interrupted=True),
        "no reason given",
    ),
    (
        "node stopped reporting (phase Unknown)",
        pod("Unknown"),
        0,
        None,
        dict(exit_code=None, error_type="NodeLost", interrupted=True),
        "node was lost",
    ),
    (
        "bound to a node that never starts it",
        pod("Pending", conditions=[SCHEDULED], node="n1"),
        91,
        None,
        dict(exit_code=None, error_type="PodNotStarted", interrupted=True),
        "bound to node n1",
    ),
    (
        "bound to a node, within patience + node_lost_timeout",
        pod("Pending", conditions=[SCHEDULED], node="n1"),
        89,
        None,
        None,
        "",
    ),
    (
        "image cannot be pulled: ErrImagePull",
        pod("Pending", container=waiting("ErrImagePull")),
        0,
        None,
        dict(exit_code=None, error_type="ImagePullError", fatal=True, retryable=False),
        "'r/kubeface:1' cannot be pulled",
    ),
    (
        "image cannot be pulled: ImagePullBackOff",
        pod("Pending", container=waiting("ImagePullBackOff")),
        0,
        None,
        dict(error_type="ImagePullError", fatal=True, retryable=False),
        "ImagePullBackOff",
    ),
    (
        "image name invalid",
        pod("Pending", container=waiting("InvalidImageName")),
        0,
        None,
        dict(error_type="ImagePullError", fatal=True, retryable=False),
        "InvalidImageName",
    ),
    (
        "image never pulled (policy Never)",
        pod("Pending", container=waiting("ErrImageNeverPull")),
        0,
        None,
        dict(error_type="ImagePullError", fatal=True, retryable=False),
        "ErrImageNeverPull",
    ),
    (
        "container config error",
        pod("Pending", container=waiting("CreateContainerConfigError")),
        0,
        None,
        dict(exit_code=None, error_type="ContainerConfigError", fatal=True, retryable=False),
        "service_account",
    ),
    (
        "an image that runs as root",
        pod(
            "Pending",
            container=waiting(
                "CreateContainerConfigError", "container has runAsNonRoot and image will run as root (pod: x)"
            ),
        ),
        0,
        None,
        dict(exit_code=None, error_type="ContainerConfigError", fatal=True, retryable=False),
        "USER 65532:65532",
    ),
    (
        "containerd restarted under the start (real node): run again",
        pod("Pending", container=waiting("RunContainerError", "error reading from server: EOF")),
        0,
        None,
        dict(error_type="RuntimeError", interrupted=True, fatal=False),
        "container runtime failed",
    ),
    (
        "container cannot run",
        pod("Pending", container=waiting("RunContainerError")),
        0,
        None,
        dict(error_type="ContainerConfigError", fatal=True),
        "RunContainerError",
    ),
    ("container creating (pulling): wait", pod("Pending", container=waiting("ContainerCreating")), 80, None, None, ""),
    (
        "container creating past the patience: the node cannot make its sandbox",
        pod("Pending", container=waiting("ContainerCreating")),
        1000,
        None,
        dict(error_type="PodNotStarted", interrupted=True),
        "could not create the pod's container",
    ),
    ("unschedulable within patience: wait", pod("Pending", conditions=[unschedulable(TAINTED)]), 59, None, None, ""),
    (
        "unschedulable past patience: no node fits",
        pod("Pending", conditions=[unschedulable(TAINTED)]),
        61,
        None,
        dict(exit_code=None, error_type="Unschedulable", retryable=False, fatal=False),
        "untolerated taint",
    ),
    (
        "no room, no pod of the job runs, past patience",
        pod("Pending", conditions=[unschedulable(NO_ROOM)]),
        61,
        None,
        dict(error_type="Unschedulable", retryable=False),
        "unschedulable_patience",
    ),
    (
        "no room the job's own pods hold: back pressure",
        pod("Pending", conditions=[unschedulable(NO_ROOM)]),
        10000,
        600 + 60,
        None,
        "",
    ),
    (
        "some node lacks only room, held: back pressure",
        pod("Pending", conditions=[unschedulable(SOME_ROOM)]),
        10000,
        100,
        None,
        "",
    ),
    (
        "no room and no progress past element_timeout + patience",
        pod("Pending", conditions=[unschedulable(NO_ROOM)]),
        10000,
        600 + 61,
        dict(error_type="Unschedulable", retryable=False),
        "made no progress for 661s",
    ),
    (
        "fits no node even when held (a taint, not room)",
        pod("Pending", conditions=[unschedulable(TAINTED)]),
        61,
        5,
        dict(error_type="Unschedulable", retryable=False),
        "no node could run the pod for 61s",
    ),
    ("just created (no phase yet): wait", pod(None), 0, None, None, ""),
    ("pending, not yet scheduled: wait", pod("Pending"), 30, None, None, ""),
    ("running: wait", pod("Running", container={"running": {}}, node="n1"), 0, None, None, ""),
]


@pytest.mark.parametrize("name, the_pod, pending, held, expected, words", ROWS, ids=[row[0] for row in ROWS])
def test_pod_end_maps_each_pod_state(name, the_pod, pending, held, expected, words):
    end = pod_end(the_pod, pending, SETTINGS, held)
    if expected is None:
        assert end is None
        return
    assert end is not None
    for field, value in expected.items():
        assert getattr(end, field) == value, field
    assert words in end.reason


@pytest.mark.parametrize(
    "message, short",
    [(NO_ROOM, True), (SOME_ROOM, True), (TAINTED, False), ("0/2 nodes are available: 2 Too many pods.", True)],
)
def test_short_of_capacity_reads_the_schedulers_message(message, short):
    assert short_of_capacity(pod("Pending", conditions=[unschedulable(message)])) == short


def test_a_pod_bound_to_a_node_and_still_starting_holds_the_room_as_a_running_one_does():
    """On a loaded node a pod's container takes a while to start: the pods queued behind it wait for it
    (element_timeout + unschedulable_patience), not unschedulable_patience alone as if nothing of the job ran."""
    assert holds_room(pod("Running", node="n1"))
    assert holds_room(pod("Pending", container=waiting("ContainerCreating"), conditions=[SCHEDULED], node="n1"))
    assert not holds_room(pod("Pending", conditions=[unschedulable(NO_ROOM)]))
    assert not holds_room(pod("Succeeded", node="n1"))
    assert not holds_room(pod("Running", node="n1", deleting=True))
