"""The Kubernetes backend against a real kube-apiserver, scheduler and controller manager.

Pods run on the test cluster's real node (tests/infra/cluster: kubelet, containerd, runc) from the image
images/Dockerfile builds; all data goes through fake-gcs-server on the pod network's gateway. Each test gets
its own namespace.
"""

import json
import os
import signal
import threading
import time

import pytest

from luigi_kubeface import Client
from luigi_kubeface.errors import ConfigurationError, JobFailedError
from luigi_kubeface.job.definition import Job
from kube_support import (
    PodCounter,
    chatty_nap,
    kube_settings,
    log_or_nothing,
    nap,
    pods,
    running_pods,
    start_master,
    wait_until,
)
from support import run_luigi
from elements import square

pytestmark = pytest.mark.slow


def master_requests(cluster):
    """Every request made with the master's own identity, from the API server's audit log (a real kubelet
    makes about ten pod requests of its own per pod, and the test's own sampling counts apart)."""
    return cluster.control_plane.requests_of()


def test_map_of_60_elements_with_a_cap_and_no_pods_left(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, max_in_flight=20)
    before = master_requests(kube_cluster)
    started = time.monotonic()
    with PodCounter(kube_cluster, kube_namespace) as counter:
        results = Client(settings).map(square, range(60), job_id="squares-60")
    elapsed = time.monotonic() - started
    assert list(results) == [x * x for x in range(60)]
    per_pod = (master_requests(kube_cluster) - before) / 60
    print(
        "60 elements on Kubernetes: %.1fs, at most %d pods at once, %.2f master API requests per pod"
        % (elapsed, counter.most, per_pod)
    )
    assert 0 < counter.most <= 20
    assert per_pod < 4  # create, delete, and a share of one list and a few watches
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "finished pods to be deleted")
    secrets = json.loads(kube_cluster.core().list_namespaced_secret(kube_namespace, _preload_content=False).data)
    assert not [s for s in secrets["items"] if s["metadata"]["name"].startswith("kf-")]


def test_example_pipeline_runs_on_kubernetes(kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path):
    env = {"STORAGE_EMULATOR_HOST": fake_gcs.url, "GOOGLE_CLOUD_PROJECT": "test"}
    flags = [
        "--kubeface-backend",
        "kubernetes",
        "--kubeface-storage-root",
        gcs_root,
        "--kubeface-image",
        kube_cluster.image,
        "--kubeface-namespace",
        kube_namespace,
        "--kubeface-kubeconfig",
        kube_cluster.kubeconfig,
        "--kubeface-cpu-request",
        "100m",
        "--kubeface-memory-limit",
        "2Gi",
        "--kubeface-pod-env",
        json.dumps(env),
    ]
    result = run_luigi(
        ["--module", "example_pipelines.model_selection", "PickBest", "--local-scheduler"] + flags,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    best = json.loads(next((tmp_path / "example-output").glob("model_selection_*.json")).read_text())
    assert best["best"]["accuracy"] > 0.9 and len(best["ranking"]) == 12
    assert not pods(kube_cluster, kube_namespace)


def test_unschedulable_pod_fails_its_element_with_the_schedulers_reason(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    settings = kube_settings(
        kube_cluster, kube_namespace, fake_gcs, gcs_root, cpu_request="500", unschedulable_patience=3
    )
    with pytest.raises(JobFailedError) as failure:
        Client(settings).map(square, [1])
    text = str(failure.value)
    assert "Unschedulable" in text and "Insufficient cpu" in text and "cpu_request" in text
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "the pending pod to be deleted")


def test_unknown_image_stops_the_job_at_once(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, image="no-such/image:1", retries=3)
    started = time.monotonic()
    with pytest.raises(JobFailedError) as failure:
        Client(settings).map(square, range(5))
    text = str(failure.value)
    assert "ImagePullError" in text and "'no-such/image:1' cannot be pulled" in text and "stopped early" in text
    assert time.monotonic() - started < 60  # no retries of a missing image (bound, not a timing claim)
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "pods to be deleted")


def hog_memory(x):
    block = bytearray(600 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return len(block)


def test_oom_killed_element_fails_with_the_fix(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, memory_limit="300Mi")
    with pytest.raises(JobFailedError) as failure:
        Client(settings).map(hog_memory, [1])
    text = str(failure.value)
    assert "OutOfMemory" in text and "300Mi" in text and "raise [kubeface] memory_limit" in text


def exit_or_raise(x):
    if x == 0:
        os._exit(7)
    raise ValueError("element %d is wrong" % x)


def test_non_zero_exit_and_exception_are_explained(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, retries=0, failure_budget=1.0)
    with pytest.raises(JobFailedError) as failure:
        Client(settings).map(exit_or_raise, [0, 1])
    text = str(failure.value)
    assert "exited with code 7" in text
    assert "ValueError: element N is wrong" in text or "ValueError: element 1 is wrong" in text


def test_evicted_pod_is_retried_without_using_a_retry(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, retries=0)
    evicted = []

    def evict_first_pod():
        running = wait_until(
            lambda: [p for p in pods(kube_cluster, kube_namespace) if p["status"].get("phase") == "Running"],
            60,
            "a running pod",
        )
        name = running[0]["metadata"]["name"]
        time.sleep(0.5)
        kube_cluster.evict_pod(kube_namespace, name)
        evicted.append(name)

    thread = threading.Thread(target=evict_first_pod, daemon=True)
    thread.start()
    results = Client(settings).map(nap, [3], job_id="evicted")
    thread.join()
    assert list(results) == [3] and evicted
    job = Job("evicted", settings.storage_root).store
    key = job.finished().pop()
    outcomes = [job.attempt_record(key, a)["outcome"] for a in job.attempts(key)]
    assert outcomes == ["interrupted", "success"]
    assert job.attempt_record(key, job.attempts(key)[-1])["node"] == "node-1"  # from the downward API


def test_deadline_exceeded(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, element_timeout=2, retries=0)
    with pytest.raises(JobFailedError) as failure:
        Client(settings).map(nap, [30])
    assert "Timeout" in str(failure.value) and "activeDeadlineSeconds" in str(failure.value)


def test_quota_exceeded_waits_until_quota_is_freed(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    core = kube_cluster.core()
    core.create_namespaced_resource_quota(
        kube_namespace,
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"}, "spec": {"hard": {"pods": "1"}}},
    )
    wait_until(
        lambda: (
            json.loads(core.read_namespaced_resource_quota("pods", kube_namespace, _preload_content=False).data)
            .get("status", {})
            .get("hard")
        ),
        30,
        "the quota controller",
    )
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, max_in_flight=4)
    before = kube_cluster.control_plane.request_counts(resource="pods", verb="POST", code="403")
    with PodCounter(kube_cluster, kube_namespace) as counter:
        results = Client(settings).map(square, range(4))
    assert list(results) == [0, 1, 4, 9] and counter.most_active == 1
    assert kube_cluster.control_plane.request_counts(resource="pods", verb="POST", code="403") > before


def test_missing_namespace_and_unknown_context_are_refused_before_launch(kube_cluster, fake_gcs, gcs_root):
    with pytest.raises(ConfigurationError, match="namespace 'nowhere' does not exist.*kubectl create namespace"):
        Client(kube_settings(kube_cluster, "nowhere", fake_gcs, gcs_root)).map(square, [1])
    with pytest.raises(ConfigurationError, match="kube_context = 'mars' is not in the kubeconfig: known contexts"):
        Client(kube_settings(kube_cluster, "default", fake_gcs, gcs_root, kube_context="mars")).map(square, [1])
    with pytest.raises(ConfigurationError, match="kubeconfig = '/nonexistent/config'"):
        Client(kube_settings(kube_cluster, "default", fake_gcs, gcs_root, kubeconfig="/nonexistent/config")).map(
            square, [1]
        )


def test_ctrl_c_deletes_the_pods_in_flight(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    """Every pod goes, and through its runner's SIGTERM handler, not the kubelet's SIGKILL at the end of the grace
    period: each attempt's log was uploaded by its runner on the way out."""
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root)
    master = start_master(settings, [20, 21, 22], "ctrl-c", function=chatty_nap)
    try:
        wait_until(lambda: len(running_pods(kube_cluster, kube_namespace)) == 3, 60, "3 running pods")
        time.sleep(2)  # the runners are into their elements
        master.send_signal(signal.SIGINT)
        output = master.stdout.read()
        master.wait(timeout=60)
    finally:
        master.kill()
    assert "MASTER DONE" not in output
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "the pods of the interrupted master to go")
    store = Job("ctrl-c", gcs_root).store
    logs = [
        log_or_nothing(store, key, attempt) for key, attempts in store.all_attempts().items() for attempt in attempts
    ]
    assert len(logs) == 3 and all(b"napping for" in log for log in logs), logs


def test_a_rerun_adopts_pods_an_earlier_master_left_running(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root)
    master = start_master(settings, [6, 7, 8], "adopt")
    try:
        wait_until(lambda: len(running_pods(kube_cluster, kube_namespace)) == 3, 60, "3 running pods")
        master.send_signal(signal.SIGKILL)  # no cleanup at all: the pods keep running
        master.wait(timeout=30)
    finally:
        master.kill()
    names = {p["metadata"]["name"] for p in pods(kube_cluster, kube_namespace)}
    creates = kube_cluster.control_plane.request_counts(resource="pods", verb="POST", scope="namespace")
    results = Client(settings).map(nap, [6, 7, 8], job_id="adopt")
    assert list(results) == [6, 7, 8]
    assert kube_cluster.control_plane.request_counts(resource="pods", verb="POST", scope="namespace") == creates
    job = Job("adopt", settings.storage_root).store
    assert all(len(job.attempts(key)) == 1 for key in job.finished())  # one attempt each: nothing duplicated
    assert len(names) == 3
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "adopted pods to be deleted")
