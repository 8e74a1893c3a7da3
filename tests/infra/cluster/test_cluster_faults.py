"""Fault injection and the less common kubelet behaviours, on the real node (and on the stand-in kubelet for
what only it can fake: a node-pressure eviction, stopped heartbeats)."""

import json
import time

import pytest

from .fixtures import container_state, pod_body

pytestmark = pytest.mark.slow


def conditions(obj):
    return {c["type"]: c for c in obj.get("status", {}).get("conditions") or []}


def test_evicted_pod(stand_in_cluster, stand_in_namespace):
    """Stand-in: a node-pressure eviction by the kubelet (phase Failed, reason Evicted) cannot be caused on
    demand on a real node without starving the machine."""
    cluster, namespace = stand_in_cluster, stand_in_namespace
    core = cluster.core()
    core.create_namespaced_pod(namespace, pod_body("ev", cluster.image, ["sleep", "60"]))
    cluster.wait_pod_phase(namespace, "ev", "Running")
    cluster.evict_pod(namespace, "ev")
    pod = cluster.wait_pod_phase(namespace, "ev")
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "Evicted"
    assert conditions(pod)["DisruptionTarget"]["status"] == "True"


def test_eviction_api_stops_the_pod_gracefully(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    # `sleep` as PID 1 ignores SIGTERM: the kubelet kills it at the end of the grace period.
    core.create_namespaced_pod(
        kube_namespace, pod_body("ev", kube_cluster.image, ["sleep", "60"], terminationGracePeriodSeconds=2)
    )
    kube_cluster.wait_pod_phase(kube_namespace, "ev", "Running")
    kube_cluster.evict_pod(kube_namespace, "ev")
    kube_cluster.wait_pod_gone(kube_namespace, "ev", timeout=30)


def test_on_failure_restarts_and_previous_logs(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    # A restarted container gets a fresh filesystem: the count lives in the pod's emptyDir. The second run
    # waits a little: the kubelet keeps a dead container's log only while its pod runs.
    script = (
        "import os, sys, time; p = '/state/n'; "
        "n = int(open(p).read()) if os.path.exists(p) else 0; open(p, 'w').write(str(n + 1)); "
        "print('attempt', n, flush=True); time.sleep(4 if n else 0); sys.exit(0 if n >= 1 else 1)"
    )
    core.create_namespaced_pod(
        kube_namespace,
        pod_body(
            "flaky",
            kube_cluster.image,
            ["python", "-c", script],
            restartPolicy="OnFailure",
            volumes=[{"name": "state", "emptyDir": {}}],
            securityContext={"fsGroup": 65532},
            container={"volumeMounts": [{"name": "state", "mountPath": "/state"}]},
        ),
    )
    kube_cluster.wait_pod(
        kube_namespace,
        "flaky",
        lambda p: (
            (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1
            and "running" in container_state(p)
        ),
        timeout=60,
    )
    assert core.read_namespaced_pod_log("flaky", kube_namespace, previous=True) == "attempt 0\n"
    pod = kube_cluster.wait_pod_phase(kube_namespace, "flaky", timeout=60)
    status = pod["status"]["containerStatuses"][0]
    assert pod["status"]["phase"] == "Succeeded" and status["restartCount"] == 1
    assert core.read_namespaced_pod_log("flaky", kube_namespace) == "attempt 1\n"


def test_log_options(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    core.create_namespaced_pod(
        kube_namespace, pod_body("many", kube_cluster.image, ["python", "-c", "for i in range(5): print(i)"])
    )
    kube_cluster.wait_pod_phase(kube_namespace, "many")
    assert core.read_namespaced_pod_log("many", kube_namespace, tail_lines=2) == "3\n4\n"
    stamped = core.read_namespaced_pod_log("many", kube_namespace, timestamps=True, tail_lines=1)
    assert stamped.endswith(" 4\n") and stamped.startswith("20")


def test_delete_pod_stuck_in_image_pull(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    core.create_namespaced_pod(kube_namespace, pod_body("stuck", "nope:latest", ["true"]))
    kube_cluster.wait_pod(kube_namespace, "stuck", lambda p: "waiting" in container_state(p))
    core.delete_namespaced_pod("stuck", kube_namespace)
    kube_cluster.wait_pod_gone(kube_namespace, "stuck", timeout=30)


def test_job_completes_and_gc_removes_pods(kube_cluster, kube_namespace):
    from kubernetes import client

    batch = client.BatchV1Api(kube_cluster.api_client())
    batch.create_namespaced_job(
        kube_namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j"},
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": pod_body("x", kube_cluster.image, ["python", "-c", "print('job')"])["spec"]},
            },
        },
        _preload_content=False,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = json.loads(batch.read_namespaced_job("j", kube_namespace, _preload_content=False).data)
        if conditions(job).get("Complete", {}).get("status") == "True":
            break
        time.sleep(0.3)
    else:
        pytest.fail("job did not complete: %s" % job.get("status"))
    batch.delete_namespaced_job("j", kube_namespace, propagation_policy="Background", _preload_content=False)
    core = kube_cluster.core()
    deadline = time.monotonic() + 30
    while core.list_namespaced_pod(kube_namespace, label_selector="job-name=j").items:
        assert time.monotonic() < deadline, "garbage collector did not delete the job's pods"
        time.sleep(0.3)


def test_node_not_ready_and_heartbeat_loss(stand_in_cluster):
    """Stand-in: a Ready=False report from a live kubelet, and heartbeats stopped while it runs on."""
    agent, node = stand_in_cluster.agent, "node-1"
    core = stand_in_cluster.core()

    def ready_status():
        n = json.loads(core.read_node(node, _preload_content=False).data)
        return conditions(n)["Ready"]["status"]

    try:
        agent.set_node_ready(node, False)
        assert ready_status() == "False"
        agent.set_node_ready(node, True)
        assert ready_status() == "True"
        # Without Lease renewals the node lifecycle controller marks the node Unknown
        # after --node-monitor-grace-period (20 s here).
        agent.stop_heartbeats(node)
        deadline = time.monotonic() + 60
        while ready_status() != "Unknown":
            assert time.monotonic() < deadline, "node never became Unknown"
            time.sleep(0.5)
    finally:
        agent.resume_heartbeats(node)
        agent.set_node_ready(node, True)
    agent.wait_nodes_schedulable(60)


def test_follow_logs_of_running_pod(kube_cluster, kube_namespace):
    core = kube_cluster.core()
    script = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.5)"
    core.create_namespaced_pod(kube_namespace, pod_body("talk", kube_cluster.image, ["python", "-c", script]))
    kube_cluster.wait_pod_phase(kube_namespace, "talk", ("Running", "Succeeded"))
    resp = core.read_namespaced_pod_log("talk", kube_namespace, follow=True, _preload_content=False)
    assert resp.data.decode() == "line 0\nline 1\nline 2\n"


def test_api_server_outage_and_recovery(kube_cluster, kube_namespace):
    """The agent's watch and heartbeats survive an API server restart (same port)."""
    cp, core = kube_cluster.control_plane, kube_cluster.core()
    cp.stop_component("kube-apiserver")
    try:
        with pytest.raises(Exception):  # noqa: B017 - whichever transport error the client raises for a dead port
            core.list_namespaced_pod(kube_namespace, _request_timeout=2)
        time.sleep(3)
    finally:
        cp.start_component("kube-apiserver")
    core.create_namespaced_pod(kube_namespace, pod_body("after", kube_cluster.image, ["true"]))
    pod = kube_cluster.wait_pod_phase(kube_namespace, "after", timeout=60)
    assert pod["status"]["phase"] == "Succeeded"
