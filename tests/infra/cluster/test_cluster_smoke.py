"""Smoke tests of the local cluster: the things the Kubernetes backend relies on."""

import json
import signal
import time

import pytest
from kubernetes.client.rest import ApiException

from .fixtures import container_state, pod_body

pytestmark = pytest.mark.slow


def test_pod_runs_to_success_and_logs_are_readable(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    core.create_namespaced_pod(
        kube_namespace,
        pod_body(
            "hello",
            kube_cluster.image,
            ["python", "-c", "import os; print('hi', os.environ['GREETING'])"],
            container={"env": [{"name": "GREETING", "value": "there"}]},
        ),
    )
    pod = kube_cluster.wait_pod_phase(kube_namespace, "hello", timeout=60)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    term = container_state(pod)["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert core.read_namespaced_pod_log("hello", kube_namespace) == "hi there\n"


def test_failure_exit_code_and_secret_env(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    core.create_namespaced_secret(
        kube_namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"code": "3"}}
    )
    core.create_namespaced_pod(
        kube_namespace,
        pod_body(
            "fails",
            kube_cluster.image,
            ["python", "-c", "import os, sys; sys.exit(int(os.environ['CODE']))"],
            container={"env": [{"name": "CODE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "code"}}}]},
        ),
    )
    pod = kube_cluster.wait_pod_phase(kube_namespace, "fails")
    term = container_state(pod)["terminated"]
    assert pod["status"]["phase"] == "Failed" and term["exitCode"] == 3 and term["reason"] == "Error"


def test_unknown_image_gives_err_image_pull(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    core.create_namespaced_pod(kube_namespace, pod_body("noimage", "no-such-image:1", ["true"]))
    pulls = ("ErrImagePull", "ImagePullBackOff")
    pod = kube_cluster.wait_pod(
        kube_namespace, "noimage", lambda p: container_state(p).get("waiting", {}).get("reason") in pulls, timeout=30
    )
    assert pod["status"]["phase"] == "Pending"
    # The pull went to the closed loopback port every registry points at, never out of the machine.
    assert "127.0.0.1:9" in container_state(pod)["waiting"].get("message", ""), container_state(pod)
    kube_cluster.wait_pod(
        kube_namespace, "noimage", lambda p: container_state(p).get("waiting", {}).get("reason") == "ImagePullBackOff"
    )


def test_huge_cpu_request_is_unschedulable(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    core.create_namespaced_pod(
        kube_namespace,
        pod_body("huge", kube_cluster.image, ["true"], container={"resources": {"requests": {"cpu": "1000"}}}),
    )

    def unschedulable(p):
        return any(
            c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"
            for c in p.get("status", {}).get("conditions") or []
        )

    pod = kube_cluster.wait_pod(kube_namespace, "huge", unschedulable, timeout=30)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


def test_resource_quota_rejects_second_pod(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    core.create_namespaced_resource_quota(
        kube_namespace,
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}},
    )
    # The quota controller must have filled in status before admission enforces it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        q = json.loads(core.read_namespaced_resource_quota("q", kube_namespace, _preload_content=False).data)
        if q.get("status", {}).get("hard"):
            break
        time.sleep(0.2)
    core.create_namespaced_pod(kube_namespace, pod_body("one", kube_cluster.image, ["sleep", "30"]))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod(kube_namespace, pod_body("two", kube_cluster.image, ["sleep", "30"]))
    assert exc.value.status == 403 and "exceeded quota" in exc.value.body


def test_oom_deadline_kill_and_delete(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    img = kube_cluster.image
    core.create_namespaced_pod(
        kube_namespace,
        pod_body(
            "oom",
            img,
            ["python", "-c", 'import time; x = b"x" * (300 * 2**20); time.sleep(30)'],
            container={"resources": {"limits": {"memory": "100Mi"}}},
        ),
    )
    core.create_namespaced_pod(kube_namespace, pod_body("slow", img, ["sleep", "60"], activeDeadlineSeconds=2))
    core.create_namespaced_pod(kube_namespace, pod_body("victim", img, ["sleep", "60"]))
    core.create_namespaced_pod(kube_namespace, pod_body("doomed", img, ["sleep", "60"]))

    pod = kube_cluster.wait_pod_phase(kube_namespace, "oom")
    assert container_state(pod)["terminated"]["reason"] == "OOMKilled"
    pod = kube_cluster.wait_pod_phase(kube_namespace, "slow")
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "DeadlineExceeded"

    kube_cluster.wait_pod_phase(kube_namespace, "victim", "Running")
    kube_cluster.node.pod_pid(kube_namespace, "victim")
    kube_cluster.node.kill_pod_process(kube_namespace, "victim", signal.SIGKILL)
    pod = kube_cluster.wait_pod_phase(kube_namespace, "victim")
    assert container_state(pod)["terminated"]["exitCode"] == 137

    kube_cluster.wait_pod_phase(kube_namespace, "doomed", "Running")
    core.delete_namespaced_pod("doomed", kube_namespace)  # graceful: the kubelet kills, then deletes
    kube_cluster.wait_pod_gone(kube_namespace, "doomed", timeout=30)


def test_namespace_deletion_completes(kube_cluster):
    core = kube_cluster.core()
    ns = kube_cluster.create_namespace("del")
    core.create_namespaced_pod(ns, pod_body("p", kube_cluster.image, ["sleep", "60"]))
    core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    kube_cluster.wait_pod_phase(ns, "p", "Running")
    kube_cluster.delete_namespace(ns, wait=True, timeout=90)


def test_apiserver_metrics(kube_cluster):
    assert kube_cluster.control_plane.request_counts(resource="pods") > 0
