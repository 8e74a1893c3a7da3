"""namespace_max_pods on the test cluster: two jobs started together share one cap, sampled from the API server."""

import json
import threading
import time

import pytest

from kube_support import kube_settings, pods, start_master, wait_until
from luigi_kubeface.backends.kubernetes.pod_spec import JOB_LABEL

pytestmark = pytest.mark.slow


def test_two_jobs_started_together_never_hold_more_than_the_namespace_cap_and_both_progress(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    settings = kube_settings(
        kube_cluster, kube_namespace, fake_gcs, gcs_root, max_in_flight=6, namespace_max_pods=6, element_timeout=300
    )
    samples, stop = [], threading.Event()

    def sample():  # every 0.2 s: the pods that hold room (not yet Succeeded or Failed), by job
        while not stop.is_set():
            holding = {}
            for pod in pods(kube_cluster, kube_namespace):
                if pod["status"].get("phase") not in ("Succeeded", "Failed"):
                    job = pod["metadata"]["labels"][JOB_LABEL]
                    holding[job] = holding.get(job, 0) + 1
            samples.append(holding)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    items = [3 + i / 1000 for i in range(10)]
    masters = [start_master(settings, items, job_id) for job_id in ("first", "second")]
    try:
        outputs = [m.stdout.read() for m in masters]  # each ends when its master does
        for master in masters:
            master.wait(timeout=60)
    finally:
        stop.set()
        sampler.join()
        for master in masters:
            master.kill()
    for master, output in zip(masters, outputs):
        assert master.returncode == 0 and "MASTER DONE" in output, output[-3000:]
    most = max(sum(s.values()) for s in samples)
    assert most <= 6, "%d pods held room at once (the cap is 6)" % most
    both = [s for s in samples if len(s) == 2]
    assert both, "the two jobs never ran pods at the same time: one waited for the other to finish"
    assert max(sum(s.values()) for s in both) <= 6
    per_job = {job: max(s.get(job, 0) for s in samples) for job in set().union(*samples)}
    print(
        "samples: %d, most pods at once: %d, samples with both jobs running: %d, most per job: %s"
        % (len(samples), most, len(both), per_job)
    )
    from kubernetes import client

    leases = json.loads(
        client.CoordinationV1Api(kube_cluster.api_client())
        .list_namespaced_lease(kube_namespace, _preload_content=False)
        .data
    )["items"]
    assert not leases, "masters left their Leases: %s" % [lease["metadata"]["name"] for lease in leases]
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "pods to be deleted")


def test_two_masters_that_start_at_the_same_moment_never_take_more_than_the_cap_between_them(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    """The race of the test above, made certain: the first master lists the Leases before the second has
    published its own. Each takes what its share lets it within one refresh (as a launching master does)."""
    from luigi_kubeface.backends.kubernetes.api import KubeApi
    from luigi_kubeface.backends.kubernetes.namespace_share import NamespaceShare

    api = KubeApi(kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root))
    now = [0.0]
    first, second = (
        NamespaceShare(api, 6, name, refresh_seconds=1.0, clock=lambda: now[0]) for name in ("run-first", "run-second")
    )
    try:
        rounds = []
        for _ in range(3):  # three refresh rounds, each master taking all the room it is given
            taken = {}
            for share, name in ((first, "first"), (second, "second")):
                taken[name] = 0
                while share.take(10):
                    taken[name] += 1
            rounds.append(taken)
            now[0] += 1.0
        assert all(sum(taken.values()) <= 6 for taken in rounds), rounds  # no pod was created: shares alone
        assert rounds[-1] == {"first": 3, "second": 3}, rounds
    finally:
        first.close()
        second.close()
