"""The master keeps its connections to the API server: a pod's create and delete reuse one, not a TLS handshake each."""

import pytest

from kube_support import kube_settings
from luigi_kubeface.backends.kubernetes.api import KubeApi

pytestmark = pytest.mark.slow


def test_creating_and_deleting_pods_and_secrets_reuses_the_masters_connections(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    api = KubeApi(kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root))
    api.check_namespace()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "reuse"}, "stringData": {"a": "b"}}
    api.apply_secret(secret)
    api.apply_secret(secret)  # the replace of an existing one
    for i in range(8):  # pods no node will take (nothing runs), created and deleted
        api.create_pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "reuse-%d" % i},
                "spec": {
                    "nodeSelector": {"no-such-node": "x"},
                    "containers": [{"name": "c", "image": kube_cluster.image}],
                },
            }
        )
        api.delete_pod("reuse-%d" % i, grace_seconds=0)
    api.delete_secret("reuse")
    pool = api.client.rest_client.pool_manager.connection_from_url(api.client.configuration.host)
    assert pool.num_connections <= 2, "%d connections for 20 requests" % pool.num_connections


def test_the_pod_watch_counts_its_lists_watches_and_events_by_type(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    """The benchmark reports the watch's events and relists from these counts (the master logs them at close)."""
    from luigi_kubeface.backends.kubernetes.watch import PodWatch

    api = KubeApi(kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root))
    watch = PodWatch(api, "counted=yes").start()
    try:
        assert watch.wait_synced(30)
        for i in range(3):  # pods no node will take, created and deleted
            api.create_pod(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "counted-%d" % i, "labels": {"counted": "yes"}},
                    "spec": {
                        "nodeSelector": {"no-such-node": "x"},
                        "containers": [{"name": "c", "image": kube_cluster.image}],
                    },
                }
            )
            api.delete_pod("counted-%d" % i, grace_seconds=0)
        vanished = set()
        for _ in range(300):
            vanished |= watch.take_vanished()
            if len(vanished) == 3:
                break
            watch._stop.wait(0.1)
        counts = watch.counted()
        ended = watch.wait_ended(0)
    finally:
        watch.stop()
    assert ended  # the backend's wait() wakes on a pod's end, not after poll_interval
    assert vanished == {"counted-0", "counted-1", "counted-2"}
    assert (counts["lists"], counts["relists"], counts["gone"], counts["interrupted"]) == (1, 0, 0, 0)
    assert counts["watches"] >= 1
    assert counts["events"]["ADDED"] == 3 and counts["events"]["DELETED"] == 3
