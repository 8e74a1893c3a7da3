"""The pod of one attempt, built from settings by pure functions: easy to test and to print.

Pods are plain dicts in the Kubernetes API's JSON shape (what `kubectl get pod -o json` shows),
so a spec can be printed, diffed and sent as is.
"""

import hashlib
import json
import math
import re

from ... import cost
from ...runner import process
from ...storage import storage_class
from .memory_growth import memory_of

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "luigi-kubeface"
JOB_LABEL = "kubeface.io/job"
ELEMENT_LABEL = "kubeface.io/element"
ATTEMPT_LABEL = "kubeface.io/attempt"
SPOT_SELECTOR = "cloud.google.com/gke-spot"  # GKE Spot VMs' node label and taint
RUN_LABEL = "kubeface.io/run"  # which master created the pod: pods of the job's label made elsewhere are not ours
JOB_ID_ANNOTATION = "kubeface.io/job-id"
JOB_URL_ANNOTATION = "kubeface.io/job-url"
PARAMS_ANNOTATION = "kubeface.io/params"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
CONTAINER = "runner"

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def job_label(job_url):
    """A digest of the job's full URL: label values are at most 63 characters, and two storage roots
    holding the same job id in one namespace must not share pods or a Secret."""
    return hashlib.sha256(job_url.encode()).hexdigest()[:20]


def job_selector(job_url):
    return "%s=%s,%s=%s" % (MANAGED_BY, MANAGER, JOB_LABEL, job_label(job_url))


def _slug(text, limit):
    slug = _NOT_DNS.sub("-", text.lower()).strip("-")[:limit].strip("-")
    return slug or "job"


def pod_name(spec):
    """DNS-1123, at most 63 characters, readable: kf-<job>-<element>-<attempt number>-<random>."""
    number, _, rest = spec.attempt.partition("-")
    suffix = rest.rsplit("-", 1)[-1]
    return "kf-%s-%s-%s-%s" % (_slug(spec.job_id, 24), spec.element[:12], number, _slug(suffix, 8))


def secret_name(job_url):
    return "kf-%s-secrets" % job_label(job_url)


def _container_resources(settings, spec):
    # Blobs pass through temporary files (serialization.Pickled, GCS downloads): disk, not memory.
    memory_request, memory_limit = memory_of(settings, spec.out_of_memory)  # more after each OOM (memory_growth)
    requests = {
        "cpu": settings.cpu_request,
        "memory": memory_request,
        "ephemeral-storage": settings.ephemeral_storage_request,
    }
    limits = {"memory": memory_limit}
    if settings.cpu_limit:
        limits["cpu"] = settings.cpu_limit
    if settings.gpus:
        limits["nvidia.com/gpu"] = str(settings.gpus)  # GPUs are requested through limits only
    return {"requests": {k: v for k, v in requests.items() if v}, "limits": limits}


def on_spot(settings, spec):
    """Whether the attempt runs on spot nodes: spot = true, until the element was preempted spot_fallback_after
    times (an element preempted again and again on spot would never finish)."""
    fallback = settings.spot_fallback_after
    return settings.spot and not (fallback and spec.interruptions >= fallback)


def _scheduling(settings, spec):
    """Node selector and tolerations: the user's, plus those that spot nodes, GPUs and node loss need."""
    selector = dict(settings.node_selector)
    tolerations = [dict(t) for t in settings.tolerations]
    if on_spot(settings, spec):
        selector[SPOT_SELECTOR] = "true"
        tolerations.append({"key": SPOT_SELECTOR, "operator": "Equal", "value": "true", "effect": "NoSchedule"})
    if settings.gpus:
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    for condition in ("not-ready", "unreachable"):  # how long a pod waits on a lost node before it is evicted
        tolerations.append(
            {
                "key": "node.kubernetes.io/" + condition,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": int(settings.node_lost_timeout),
            }
        )
    return selector, tolerations


def _env(settings, spec, access):
    env = [{"name": k, "value": v} for k, v in sorted(settings.pod_env.items())]
    env.append({"name": "KUBEFACE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    # What the attempt had, for its record: its priced request, its memory limit, whether it may run on spot nodes.
    env.append({"name": cost.RESOURCES_ENV, "value": json.dumps(spec.resources)})
    env.append({"name": "KUBEFACE_MEMORY_LIMIT", "value": memory_of(settings, spec.out_of_memory)[1]})
    env.append({"name": "KUBEFACE_SPOT", "value": "true" if on_spot(settings, spec) else "false"})
    for name in sorted(spec.secret_env):  # values live in the job's Secret, never in the pod spec
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(spec.job_url), "key": name}}})
    env.extend(dict(e) for e in access.env)  # what the storage needs: its endpoint, credentials' Secret or file
    return env


def _user(settings):
    """runAsUser and runAsGroup, unless run_as_user = 0: then the image's own USER (and group), which runAsNonRoot
    refuses if it is root. (containerd refuses a group without a user.)"""
    if not settings.run_as_user:
        return {}
    return {"runAsUser": settings.run_as_user, "runAsGroup": settings.run_as_group}


def _metadata(spec, settings):
    """The pod's name, labels (the job's, the element's, the attempt's) and annotations."""
    labels = dict(settings.pod_labels)
    labels.update(
        {
            MANAGED_BY: MANAGER,
            JOB_LABEL: job_label(spec.job_url),
            ELEMENT_LABEL: spec.element,
            ATTEMPT_LABEL: spec.attempt,
        }
    )
    annotations = dict(settings.pod_annotations)
    annotations.update(
        {
            JOB_ID_ANNOTATION: spec.job_id,
            JOB_URL_ANNOTATION: spec.job_url,
            SAFE_TO_EVICT: "true" if settings.safe_to_evict else "false",
        }
    )
    if settings.pod_params_annotation:  # off when parameters are confidential: whoever lists pods reads them
        annotations[PARAMS_ANNOTATION] = spec.label[:1000]
    return {"name": pod_name(spec), "labels": labels, "annotations": annotations}


def _runner_container(spec, settings, access):
    """The one container: the runner's command for the attempt, its env and resources, non-root and unprivileged."""
    return {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": process.command(spec.job_url, spec.element, spec.attempt),
        "env": _env(settings, spec, access),
        "resources": _container_resources(settings, spec),
        "securityContext": {
            "runAsNonRoot": True,
            **_user(settings),
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def build_pod(spec, settings):
    """The pod that runs one attempt: bare, restartPolicy Never (the engine owns retries), non-root."""
    selector, tolerations = _scheduling(settings, spec)
    access = storage_class(spec.job_url).pod_access(settings)
    container = _runner_container(spec, settings, access)
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "activeDeadlineSeconds": max(1, math.ceil(settings.element_timeout)),
        "terminationGracePeriodSeconds": 10,
        "automountServiceAccountToken": settings.mount_service_account_token,
        # runAsGroup: without it the runtime keeps group 0 whatever the image's USER says; fsGroup
        # makes mounted volumes (a storage's key Secret) the pod group's.
        "securityContext": {
            "runAsNonRoot": True,
            **_user(settings),
            "fsGroup": settings.run_as_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "tolerations": tolerations,
    }
    if selector:
        pod_spec["nodeSelector"] = selector
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    if access.volumes:
        pod_spec["volumes"] = [dict(v) for v in access.volumes]
        container["volumeMounts"] = [dict(m) for m in access.mounts]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(spec, settings), "spec": pod_spec}


def build_secret(job_url, secret_env):
    """The job's Secret: how secret_env reaches pods without appearing in any pod spec."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": secret_name(job_url), "labels": {MANAGED_BY: MANAGER, JOB_LABEL: job_label(job_url)}},
        "stringData": dict(secret_env),
    }
