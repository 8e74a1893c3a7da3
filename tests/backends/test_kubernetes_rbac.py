"""The master checks its permissions before launch (issue 16, item 5): a ServiceAccount without one verb."""

import json

import pytest
import yaml

from kube_support import kube_settings, nap, pods
from luigi_kubeface import Client
from luigi_kubeface.errors import ConfigurationError
from support import REPO, read_text

pytestmark = pytest.mark.slow


def service_account_kubeconfig(cluster, namespace, rules, path):
    """A kubeconfig holding the token of a new ServiceAccount bound to a Role with these rules."""
    core, rbac = cluster.core(), __import__("kubernetes").client.RbacAuthorizationV1Api(cluster.api_client())
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "master"}}, _preload_content=False)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "master"}, "rules": rules}, _preload_content=False)
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "master"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "master"},
            "subjects": [{"kind": "ServiceAccount", "name": "master", "namespace": namespace}],
        },
        _preload_content=False,
    )
    token = json.loads(
        core.create_namespaced_service_account_token(
            "master", namespace, {"spec": {"expirationSeconds": 3600}}, _preload_content=False
        ).data
    )["status"]["token"]
    admin = yaml.safe_load(read_text(cluster.kubeconfig))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "master", "user": {"token": token}}],
        "contexts": [{"name": "master", "context": {"cluster": admin["clusters"][0]["name"], "user": "master"}}],
        "current-context": "master",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def shipped_rules(without=None):
    """The rules of docs/kubernetes-rbac.yaml, less one verb."""
    role = next(d for d in yaml.safe_load_all(read_text(REPO + "/docs/kubernetes-rbac.yaml")) if d["kind"] == "Role")
    rules = role["rules"]
    if without:
        resource, verb = without
        for rule in rules:
            if resource in rule["resources"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return rules


def test_a_role_without_watch_fails_before_launch_naming_the_verb(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    kubeconfig = service_account_kubeconfig(
        kube_cluster, kube_namespace, shipped_rules(("pods", "watch")), tmp_path / "kubeconfig"
    )
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, kubeconfig=kubeconfig)
    with pytest.raises(ConfigurationError) as failure:
        Client(settings).map(nap, [1])
    text = str(failure.value)
    assert "may not watch pods in namespace" in text and "docs/kubernetes-rbac.yaml" in text, text
    assert not pods(kube_cluster, kube_namespace)  # nothing launched


def test_the_shipped_role_is_enough(kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path):
    kubeconfig = service_account_kubeconfig(kube_cluster, kube_namespace, shipped_rules(), tmp_path / "kubeconfig")
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, kubeconfig=kubeconfig)
    assert list(Client(settings).map(nap, [1, 1.5])) == [1, 1.5]


def test_namespace_max_pods_without_the_leases_rule_fails_before_launch_naming_it(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    kubeconfig = service_account_kubeconfig(
        kube_cluster, kube_namespace, shipped_rules(("leases", "patch")), tmp_path / "without"
    )
    settings = kube_settings(
        kube_cluster, kube_namespace, fake_gcs, gcs_root, kubeconfig=kubeconfig, namespace_max_pods=2
    )
    with pytest.raises(ConfigurationError) as failure:
        Client(settings).map(nap, [1])
    assert "may not patch leases in namespace" in str(failure.value), str(failure.value)


def test_the_shipped_role_is_enough_for_namespace_max_pods(kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path):
    kubeconfig = service_account_kubeconfig(kube_cluster, kube_namespace, shipped_rules(), tmp_path / "shipped")
    settings = kube_settings(
        kube_cluster, kube_namespace, fake_gcs, gcs_root, kubeconfig=kubeconfig, namespace_max_pods=2
    )
    assert list(Client(settings).map(nap, [1, 1.5, 1.25])) == [1, 1.5, 1.25]
