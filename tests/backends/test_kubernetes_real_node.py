"""What only a real node shows: the runner as PID 1 of its container, the pod's user and group, a Secret
mounted as a volume, and an image whose user is root under runAsNonRoot.

Each runs on the test cluster's real node (kubelet, containerd, runc) from the image images/Dockerfile builds.
"""

import json
import os
import signal
import time

import pytest

from kube_support import chatty_nap, kube_settings, log_or_nothing, nap, pods, running_pods, start_master, wait_until
from luigi_kubeface import Client
from luigi_kubeface.errors import JobFailedError
from luigi_kubeface.job.definition import Job
from infra.cluster.fixtures import ROOT_IMAGE

pytestmark = pytest.mark.slow


def last_state_until_gone(cluster, namespace, name, timeout=60):
    """Poll a pod being deleted until it is gone: the last terminated state of its container (or None)."""
    from kubernetes.client.rest import ApiException

    core, last, deadline = cluster.core(), None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pod = json.loads(core.read_namespaced_pod(name, namespace, _preload_content=False).data)
        except ApiException as error:
            if error.status == 404:
                return last
            raise
        for status in pod.get("status", {}).get("containerStatuses") or []:
            last = (status.get("state") or {}).get("terminated") or last
        time.sleep(0.05)
    raise AssertionError("pod %s/%s still there after %ss" % (namespace, name, timeout))


def test_a_deleted_pod_ends_its_runner_through_sigterm_not_the_grace_periods_sigkill(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    """Defect 1 of the real-node trial: the runner is PID 1 and had no SIGTERM handler, so a deleted pod ran on
    until the kubelet's SIGKILL at the end of the grace period (exit 137). It now ends its element, writes its
    record and log, and exits with 143."""
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root)
    master = start_master(settings, [120], "sigterm", function=chatty_nap)
    try:
        (pod,) = wait_until(lambda: running_pods(kube_cluster, kube_namespace), 120, "a running pod")
        name = pod["metadata"]["name"]
        time.sleep(2)  # the runner is into its element
        kube_cluster.core().delete_namespaced_pod(name, kube_namespace)  # graceful: SIGTERM to PID 1
        last = last_state_until_gone(kube_cluster, kube_namespace, name)
    finally:
        master.send_signal(signal.SIGINT)
        master.wait(timeout=60)
        master.kill()
    if last is not None:  # the kubelet may delete the pod before anyone sees its last status
        assert last["exitCode"] == 143, last  # not 137: the kubelet's SIGKILL after the grace period
    store = Job("sigterm", gcs_root).store
    element = pod["metadata"]["labels"]["kubeface.io/element"]
    attempt = pod["metadata"]["labels"]["kubeface.io/attempt"]
    attempts = store.attempts(element)
    assert attempt in attempts
    assert store.attempt_record(element, attempt)["outcome"] == "interrupted"
    # The runner uploaded its log on its way out: killed at the end of the grace period, it never did.
    assert b"napping for 120" in log_or_nothing(store, element, attempt)
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "the pods of the stopped master to go")


def identity(_):
    return {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups())}


def test_pods_run_as_the_images_user_and_group_never_group_0(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    """Defect 2: the pod set runAsUser but not runAsGroup, and the runtime gave the runner group 0 (root)."""
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root)
    (seen,) = Client(settings).map(identity, [0], job_id="identity")
    assert seen["uid"] == 65532 and seen["gid"] == 65532, seen
    assert 0 not in seen["groups"], seen


def read_credentials(_):
    path = os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
    with open(path) as f:
        key = json.load(f)
    writable = os.access(os.path.dirname(path), os.W_OK)
    return {"path": path, "client_email": key["client_email"], "writable": writable}


def test_the_gcs_key_secret_is_mounted_read_only_and_readable_by_the_pods_user(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    key = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": "runner@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }
    kube_cluster.core().create_namespaced_secret(
        kube_namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gcs-key"},
            "stringData": {"key.json": json.dumps(key)},
        },
    )
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, gcs_key_secret="gcs-key")
    (seen,) = Client(settings).map(read_credentials, [0], job_id="gcs-key")
    assert seen == {"path": "/var/secrets/google/key.json", "client_email": key["client_email"], "writable": False}


def test_an_image_whose_user_is_root_fails_at_once_naming_run_as_non_root(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    """run_as_user = 0 takes the image's own USER; the kubelet refuses a root one under runAsNonRoot
    (CreateContainerConfigError): the job stops at once naming the setting and the fix, instead of retrying."""
    settings = kube_settings(
        kube_cluster, kube_namespace, fake_gcs, gcs_root, image=ROOT_IMAGE, retries=3, run_as_user=0
    )
    with pytest.raises(JobFailedError) as failure:
        Client(settings).map(nap, [1, 1.001])
    text = str(failure.value)
    assert "runAsNonRoot" in text and "USER 65532:65532" in text and "run_as_user" in text, text
    assert "stopped early" in text or "stopped" in text, text
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "pods to be deleted")
