"""On the test cluster's real node: an OOMKilled element runs again with more memory (real cgroup limits),
and an element preempted spot_fallback_after times runs off spot (preemption: the Eviction API, which
deletes the pod with the DisruptionTarget condition, as the node lifecycle controller does)."""

import threading
import time

import pytest

from kube_support import kube_settings, nap, pods, wait_until
from luigi_kubeface import Client
from luigi_kubeface.errors import JobFailedError
from luigi_kubeface.job.definition import Job

pytestmark = pytest.mark.slow

SPOT_LABEL = "cloud.google.com/gke-spot"


def hog(megabytes):
    """Hold megabytes of touched memory for a moment (the kernel counts only pages written)."""
    block = bytearray(megabytes << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(1)
    return megabytes


def memory_of_attempts(store, key):
    records = [store.attempt_record(key, a) for a in store.attempts(key)]
    return [(r["outcome"], r.get("error_type", ""), r.get("memory_limit")) for r in records]


def test_only_the_element_out_of_memory_grows_and_one_at_the_ceiling_fails_as_before(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    settings = kube_settings(
        kube_cluster,
        kube_namespace,
        fake_gcs,
        gcs_root,
        memory_request="128Mi",
        memory_limit="256Mi",
        oom_memory_factor=2,
        max_memory_limit="512Mi",
        retries=0,
        failure_budget=1.0,
        element_timeout=300,
    )
    with pytest.raises(JobFailedError) as failure:
        Client(settings).map(hog, [10, 320, 900], job_id="grows")
    store = Job("grows", settings.storage_root).store
    by_item = dict(zip(("10", "320", "900"), store.read_elements().keys))  # in grid order
    small, grows, too_big = (memory_of_attempts(store, by_item[i]) for i in ("10", "320", "900"))
    print("memory per attempt: 10 MB %s; 320 MB %s; 900 MB %s" % (small, grows, too_big))
    assert small == [("success", "", "256Mi")]
    assert grows == [("lost", "OutOfMemory", "256Mi"), ("success", "", "512Mi")]
    assert too_big == [("lost", "OutOfMemory", "256Mi"), ("lost", "OutOfMemory", "512Mi")]
    text = str(failure.value)
    assert "limit of 512Mi (max_memory_limit: it may grow no more)" in text and "raise [kubeface] memory_limit" in text
    assert sorted(store.finished()) == sorted([by_item["10"], by_item["320"]])
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "pods to be deleted")


def test_an_element_preempted_twice_on_spot_runs_its_third_attempt_off_spot(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    core = kube_cluster.core()
    core.patch_node("node-1", {"metadata": {"labels": {SPOT_LABEL: "true"}}})  # the node is a spot node
    seen, evicted, stop = {}, [], threading.Event()

    def preempt_twice():
        while not stop.is_set() and len(evicted) < 2:
            for pod in pods(kube_cluster, kube_namespace):
                name = pod["metadata"]["name"]
                seen[name] = (pod["spec"].get("nodeSelector") or {}).get(SPOT_LABEL)
                if pod["status"].get("phase") == "Running" and name not in evicted:
                    time.sleep(0.5)
                    kube_cluster.evict_pod(kube_namespace, name)
                    evicted.append(name)
            time.sleep(0.2)
        while not stop.is_set():  # and note where the next one runs
            for pod in pods(kube_cluster, kube_namespace):
                seen[pod["metadata"]["name"]] = (pod["spec"].get("nodeSelector") or {}).get(SPOT_LABEL)
            time.sleep(0.2)

    thread = threading.Thread(target=preempt_twice, daemon=True)
    thread.start()
    try:
        settings = kube_settings(
            kube_cluster,
            kube_namespace,
            fake_gcs,
            gcs_root,
            spot=True,
            spot_fallback_after=2,
            retries=0,
            element_timeout=300,
        )
        assert list(Client(settings).map(nap, [4], job_id="spot")) == [4]
    finally:
        stop.set()
        thread.join()
        core.patch_node("node-1", {"metadata": {"labels": {SPOT_LABEL: None}}})
    store = Job("spot", settings.storage_root).store
    (key,) = store.finished()
    records = [store.attempt_record(key, a) for a in store.attempts(key)]
    placements = [(r["outcome"], r.get("spot")) for r in records]
    print("attempts (outcome, on spot): %s; pods' spot selectors: %s" % (placements, sorted(seen.values(), key=str)))
    assert placements == [("interrupted", True), ("interrupted", True), ("success", False)]
    assert sorted(seen.values(), key=str) == [None, "true", "true"]
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "pods to be deleted")
