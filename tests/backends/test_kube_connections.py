"""The master keeps its connections to the API server: a pod's create and delete reuse one, not a TLS handshake each."""

import pytest

from kube_support import kube_settings
from luigi_kubeface.backends.kubernetes.api import KubeApi

pytestmark = pytest.mark.slow


def test_creating_and_deleting_pods_and_secrets_reuses_the_masters_connections(kube_cluster, kube_namespace, fake_gcs,
                                                                               gcs_root):
    api = KubeApi(kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root))
    api.check_namespace()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "reuse"}, "stringData": {"a": "b"}}
    api.apply_secret(secret)
    api.apply_secret(secret)  # the replace of an existing one
    for i in range(8):  # pods no node will take (nothing runs), created and deleted
        api.create_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reuse-%d" % i},
                        "spec": {"nodeSelector": {"no-such-node": "x"},
                                 "containers": [{"name": "c", "image": kube_cluster.image}]}})
        api.delete_pod("reuse-%d" % i, grace_seconds=0)
    api.delete_secret("reuse")
    pool = api.client.rest_client.pool_manager.connection_from_url(api.client.configuration.host)
    assert pool.num_connections <= 2, "%d connections for 20 requests" % pool.num_connections
