"""The Kubernetes backend with s3:// storage: pods on the test cluster's real node reach an S3 server (moto,
on the pod network's gateway) and write their results, with credentials from a Secret, never the pod spec."""

import json

import pytest

from kube_support import pods
from luigi_kubeface import Client
from luigi_kubeface.settings import Settings
from elements import square

pytestmark = pytest.mark.slow


def test_pods_reach_an_s3_bucket_and_write_results_with_an_access_key_secret(kube_cluster, kube_namespace, pod_s3):
    """The endpoint reaches the pods through pod_env (AWS_ENDPOINT_URL_S3, as boto3 reads it); the access key
    through the s3_key_secret, as Secret references: its values appear in no pod."""
    kube_cluster.core().create_namespaced_secret(
        kube_namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-key"},
            "stringData": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        },
    )
    root = "s3://pods/jobs"
    settings = Settings(
        backend="kubernetes",
        storage_root=root,
        image=kube_cluster.image,
        namespace=kube_namespace,
        kubeconfig=kube_cluster.master_kubeconfig,
        cpu_request="50m",
        memory_request="64Mi",
        memory_limit="2Gi",
        pod_env={"AWS_ENDPOINT_URL_S3": pod_s3.url, "AWS_REGION": "us-east-1"},
        s3_key_secret="s3-key",
        keep_failed_pods=True,
        poll_interval=0.2,
        retry_backoff=0.5,
        unschedulable_patience=30,
    )
    results = Client(settings).map(square, range(3), job_id="on-s3")
    assert list(results) == [0, 1, 4]
    listed = pod_s3.client().list_objects_v2(Bucket="pods", Prefix="jobs/on-s3/").get("Contents", ())
    keys = [o["Key"] for o in listed]
    assert len([k for k in keys if "/results/" in k]) == 3 and len([k for k in keys if "/logs/" in k]) == 3
    for pod in pods(kube_cluster, kube_namespace):  # any left (keep_failed_pods) holds references only
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-key"
        assert "testing" not in json.dumps(env["AWS_SECRET_ACCESS_KEY"])
