"""The pod of an attempt, as built from settings (pure functions: no cluster needed)."""

import dataclasses
import json
import re

import pytest

from luigi_kubeface.backends import AttemptSpec
from luigi_kubeface.backends.kubernetes.pod_spec import build_pod, build_secret, job_label, pod_name
from luigi_kubeface.errors import ConfigurationError
from luigi_kubeface.settings import Settings
from kube_support import pod_settings

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SPEC = AttemptSpec(
    "TrainModels_" + "x" * 150 + "_MixedCase.Dots",
    "gs://b/jobs/TrainModels_x",
    "0123456789abcdef01234567",
    "002-1764400000-a1b2c3",
    "folds=5, model='rf'",
    secret_env={"KUBEFACE_SIGNING_KEY": "s3cr3t"},
)


def test_names_and_labels_are_valid_kubernetes_names():
    pod = build_pod(SPEC, pod_settings(pod_labels={"team": "ml"}))
    name = pod["metadata"]["name"]
    assert len(name) <= 63 and DNS_1123.match(name), name
    assert name == pod_name(SPEC) and name.startswith("kf-trainmodels-") and "-002-a1b2c3" in name
    labels = pod["metadata"]["labels"]
    assert all(len(v) <= 63 and LABEL_VALUE.match(v) for v in labels.values()), labels
    assert labels["team"] == "ml" and labels["kubeface.io/job"] == job_label(SPEC.job_url)
    assert labels["kubeface.io/element"] == SPEC.element and labels["kubeface.io/attempt"] == SPEC.attempt
    annotations = pod["metadata"]["annotations"]
    assert annotations["kubeface.io/job-id"] == SPEC.job_id  # the long form lives in annotations
    assert annotations["kubeface.io/params"] == SPEC.label


def test_one_job_id_under_two_storage_roots_shares_neither_pods_nor_the_secret():
    """Labels and the Secret's name come from the job's full URL: staging/report and prod/report differ."""
    staging = dataclasses.replace(SPEC, job_url="gs://b/staging/report", job_id="report")
    prod = dataclasses.replace(SPEC, job_url="gs://b/prod/report", job_id="report")
    pods = [build_pod(s, pod_settings()) for s in (staging, prod)]
    assert pods[0]["metadata"]["labels"]["kubeface.io/job"] != pods[1]["metadata"]["labels"]["kubeface.io/job"]
    secrets = [build_secret(s.job_url, s.secret_env)["metadata"]["name"] for s in (staging, prod)]
    assert secrets[0] != secrets[1]
    refs = [
        [
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in p["spec"]["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        for p in pods
    ]
    assert refs == [[secrets[0]], [secrets[1]]]


def test_pod_runs_the_task_runner_as_non_root_without_token_or_secret_in_clear():
    pod = build_pod(SPEC, pod_settings(element_timeout=90.5))
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 91
    assert container["command"] == ["python", "-m", "luigi_kubeface.runner", SPEC.job_url, SPEC.element, SPEC.attempt]
    assert spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["runAsNonRoot"] and not container["securityContext"]["allowPrivilegeEscalation"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "s3cr3t" not in json.dumps(pod)  # the key reaches the pod through the job's Secret
    key_env = [e for e in container["env"] if e["name"] == "KUBEFACE_SIGNING_KEY"]
    assert key_env[0]["valueFrom"]["secretKeyRef"]["key"] == "KUBEFACE_SIGNING_KEY"
    assert build_secret(SPEC.job_url, SPEC.secret_env)["stringData"] == {"KUBEFACE_SIGNING_KEY": "s3cr3t"}
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


def test_ephemeral_storage_is_requested_for_blobs_streamed_through_files():
    assert "ephemeral-storage" not in build_pod(SPEC, pod_settings())["spec"]["containers"][0]["resources"]["requests"]
    pod = build_pod(SPEC, pod_settings(ephemeral_storage_request="3Gi"))
    assert pod["spec"]["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "3Gi"


def test_resources_gpus_spot_and_scheduling_settings():
    pod = build_pod(
        SPEC,
        pod_settings(
            cpu_request="2",
            memory_request="4Gi",
            cpu_limit="3",
            gpus=1,
            spot=True,
            node_selector={"pool": "big"},
            service_account="kubeface-runner",
            tolerations=[{"key": "dedicated", "operator": "Exists"}],
            safe_to_evict=True,
            pod_env={"OMP_NUM_THREADS": "2"},
            image_pull_policy="Always",
            gcs_key_secret="gcs-key",
            node_lost_timeout=45,
        ),
    )
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "4Gi", "cpu": "3", "nvidia.com/gpu": "1"},
    }
    assert spec["nodeSelector"] == {"pool": "big", "cloud.google.com/gke-spot": "true"}
    keys = {t["key"] for t in spec["tolerations"]}
    assert {"dedicated", "cloud.google.com/gke-spot", "nvidia.com/gpu", "node.kubernetes.io/not-ready"} <= keys
    assert {t.get("tolerationSeconds") for t in spec["tolerations"] if t["key"].startswith("node.")} == {45}
    assert spec["serviceAccountName"] == "kubeface-runner" and container["imagePullPolicy"] == "Always"
    assert {"name": "OMP_NUM_THREADS", "value": "2"} in container["env"]
    assert spec["volumes"][0]["secret"]["secretName"] == "gcs-key"
    assert {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/google/key.json"} in container["env"]
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"


@pytest.mark.parametrize(
    "values, words",
    [
        (dict(image=""), "image is not set"),
        (dict(storage_root="/tmp/x"), "pods cannot reach"),
        (dict(image_pull_policy="Sometimes"), "Always, IfNotPresent or Never"),
        (dict(node_selector="pool=big"), "must be a JSON object"),
        (dict(pod_env={"N": 3}), "quote numbers"),
        (dict(tolerations={"key": "x"}), "JSON list of toleration objects"),
        (dict(run_as_user=-1), "non-root"),
        (dict(run_as_group=0), "other than root's"),
    ],
)
def test_bad_kubernetes_settings_are_refused_with_the_fix(values, words):
    values = {"storage_root": "gs://b/jobs", "image": "r/kubeface:1", **values}
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        Settings(backend="kubernetes", **values)


def test_pods_run_as_the_user_and_group_of_the_settings_or_the_images_own_user():
    pod = build_pod(SPEC, pod_settings())["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsGroup"] == 65532
    assert pod["securityContext"]["fsGroup"] == 65532 and pod["containers"][0]["securityContext"]["runAsGroup"] == 65532
    own = build_pod(SPEC, pod_settings(run_as_user=0))["spec"]
    assert "runAsUser" not in own["securityContext"] and own["securityContext"]["runAsNonRoot"] is True
    assert "runAsGroup" not in own["securityContext"]  # containerd refuses a group without a user
    assert "runAsUser" not in own["containers"][0]["securityContext"]


def test_params_annotation_can_be_turned_off():
    assert build_pod(SPEC, pod_settings())["metadata"]["annotations"]["kubeface.io/params"] == SPEC.label
    annotations = build_pod(SPEC, pod_settings(pod_params_annotation=False))["metadata"]["annotations"]
    assert "kubeface.io/params" not in annotations and SPEC.label not in json.dumps(annotations)


def test_pods_of_an_s3_job_get_the_storages_endpoint_and_key_secret_by_reference():
    """pod_spec asks the job's storage what its pods need; the s3_key_secret's values never enter the spec."""
    spec = dataclasses.replace(SPEC, job_url="s3://b/jobs/TrainModels_x")
    pod = build_pod(
        spec,
        Settings(
            backend="kubernetes",
            storage_root="s3://b/jobs",
            image="r/kubeface:1",
            s3_endpoint_url="http://seaweed:8333",
            s3_key_secret="s3-key",
        ),
    )
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["KUBEFACE_S3_ENDPOINT_URL"]["value"] == "http://seaweed:8333"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-key"
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env and "volumes" not in pod["spec"]


def test_an_s3_bucket_is_storage_pods_can_reach():
    assert (
        Settings(backend="kubernetes", storage_root="s3://b/jobs", image="r/kubeface:1").storage_root == "s3://b/jobs"
    )


def test_a_pod_tells_its_runner_what_it_requested_and_its_price_for_the_attempt_record():
    from luigi_kubeface import cost
    from luigi_kubeface.backends import attempt_request

    values = pod_settings(
        cpu_request="500m",
        memory_request="2Gi",
        gpus=1,
        spot=True,
        price_cpu_hour=0.04,
        price_gb_hour=0.01,
        price_gpu_hour=1.0,
        spot_discount=0.5,
    )
    request = attempt_request(values)
    assert request == cost.Request(0.5, 2.0, 1.0, True, (0.5 * 0.04 + 2 * 0.01 + 1.0) * 0.5)
    pod = build_pod(dataclasses.replace(SPEC, resources=request.to_record()), values)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert cost.request_from_env(env) == request.to_record()
