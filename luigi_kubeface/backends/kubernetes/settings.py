"""The Kubernetes backend's own settings: where and how each attempt's pod runs.

They are keys of the one flat `[kubeface]` section (and `--kubeface-*` flags): Settings holds an
object of this class as backend_settings when backend = kubernetes, and maps the flat keys to it
(settings.py), so users write `image = ...`, never a sub-section. This module declares them, checks
them, and says what a job needs of the rest.
"""

from dataclasses import dataclass

from ...errors import ConfigurationError, check_ranges
from ...settings_fields import setting
from ...storage import storage_class

_STRING_MAPS = ("node_selector", "pod_env", "pod_labels", "pod_annotations")
MAX_IN_FLIGHT_CEILING = 400  # Kubernetes misbehaves above roughly this many pods at once


@dataclass(frozen=True)
class KubernetesSettings:
    """backend = kubernetes: one pod per attempt (checked only when it is the backend; the defaults shown)."""

    image: str = setting(
        "",
        "The task runner's image (build and push images/Dockerfile, see the README), e.g. "
        "`us-docker.pkg.dev/PROJECT/REPO/luigi-kubeface:0.1`. Required.",
    )
    namespace: str = setting("default", "The namespace the pods run in.")
    kubeconfig: str = setting(
        "", "A kubeconfig file; empty: `$KUBECONFIG` or `~/.kube/config`, else the in-cluster service account."
    )
    kube_context: str = setting("", "A context of the kubeconfig; empty: its current context.")
    service_account: str = setting(
        "",
        "The pods' Kubernetes service account: bind it to a Google service "
        "account for Workload Identity (GCS) or to an IAM role for IRSA (S3); empty: "
        "the namespace's default one.",
    )
    mount_service_account_token: bool = setting(
        False, "Mount the service account's API token in the pods (they do not need to talk to the API server)."
    )
    cpu_request: str = setting("1", "CPU requested per pod.")
    memory_request: str = setting("1Gi", "Memory requested per pod.")
    cpu_limit: str = setting("", "CPU limit per pod; empty: none.")
    memory_limit: str = setting(
        "", "Memory limit per pod; empty: the request (a pod over it is OOMKilled, not the node)."
    )
    ephemeral_storage_request: str = setting(
        "",
        "Local disk per pod: results and inputs stream through "
        "temporary files, so a pod needs about its largest result plus its "
        "largest input (README: Sizing pods for big blobs); empty: none.",
    )
    gpus: int = setting(0, "GPUs (`nvidia.com/gpu`) per pod, 0 to 16.")
    node_selector: dict = setting(
        {}, 'Where pods may run, a JSON object, e.g. `{"cloud.google.com/gke-nodepool": "workers"}`.'
    )
    tolerations: list = setting(
        [], 'Kubernetes toleration objects, a JSON list, e.g. `[{"key": "dedicated", "operator": "Exists"}]`.'
    )
    spot: bool = setting(
        False,
        "Run on GKE Spot VMs (adds their selector and toleration); evictions are retried, not counted as failures.",
    )
    spot_fallback_after: int = setting(
        0, "Preemptions of one element after which its next attempt runs off spot; 0: never."
    )
    oom_memory_factor: float = setting(
        0.0,
        "An OOMKilled element runs again with its memory times this (e.g. 2), "
        "up to `max_memory_limit`; 0: the element fails.",
    )
    max_memory_limit: str = setting(
        "", "The most memory an element may grow to, e.g. `16Gi` (`oom_memory_factor` needs it)."
    )
    pod_env: dict = setting({}, "Extra environment of every pod's runner, a JSON object (never secrets).")
    pod_labels: dict = setting({}, "Labels of every pod, a JSON object.")
    pod_annotations: dict = setting({}, "Annotations of every pod, a JSON object.")
    pod_params_annotation: bool = setting(
        True,
        "Show each pod's element parameters in its annotation "
        "`kubeface.io/params` (anyone who may list pods reads them): false when "
        "parameters are confidential.",
    )
    image_pull_policy: str = setting("IfNotPresent", "`Always`, `IfNotPresent` or `Never`.")
    safe_to_evict: bool = setting(
        False, "Let the cluster autoscaler evict running pods when it scales down (long elements: keep false)."
    )
    run_as_user: int = setting(
        65532,
        "Pods run as this non-root user (the image's USER is 65532); 0: the "
        "image's own USER, and a pod whose image runs as root is then refused "
        "(runAsNonRoot).",
    )
    run_as_group: int = setting(
        65532, "And as this group, never root's: without it the runtime drops the image's group."
    )
    unschedulable_patience: float = setting(
        600.0, "Seconds a pod may wait for a node before its element fails, with the scheduler's reason."
    )
    node_lost_timeout: float = setting(300.0, "Seconds a pod stays bound to a NotReady node before it is retried.")
    keep_failed_pods: bool = setting(False, "Keep failed pods for `kubectl describe` (they count toward nothing).")
    leave_pods_on_exit: bool = setting(
        False, "When the master exits, leave running pods to a later rerun, which adopts them."
    )
    namespace_max_pods: int = setting(
        0,
        "One cap across every job's pods in the namespace (several map tasks "
        "under --workers N, several users' masters), shared fairly: each master "
        "gets an equal part of what the others leave; 0: each job has only its own "
        "max_in_flight. Each master keeps a Lease saying what it wants "
        "(docs/kubernetes-rbac.yaml).",
    )

    def __post_init__(self):
        """Checks these keys: Luigi's frozen JSON made plain, ranges."""
        for name in _STRING_MAPS:  # Luigi hands frozen dicts
            value = getattr(self, name)
            if not isinstance(value, dict) and hasattr(value, "items"):
                object.__setattr__(self, name, dict(value))
            elif not isinstance(value, dict):
                raise ConfigurationError(
                    '[kubeface] %s = %r must be a JSON object, e.g. {"key": "value"}' % (name, value)
                )
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in getattr(self, name).items()):
                raise ConfigurationError(
                    "[kubeface] %s = %r: keys and values must be strings (quote numbers)" % (name, value)
                )
        tolerations = self.tolerations
        if not isinstance(tolerations, (list, tuple)) or not all(hasattr(t, "items") for t in tolerations):
            raise ConfigurationError(
                "[kubeface] tolerations = %r must be a JSON list of toleration objects, "
                'e.g. [{"key": "dedicated", "operator": "Exists"}]' % (tolerations,)
            )
        object.__setattr__(self, "tolerations", [_plain(t) for t in tolerations])
        check_ranges(
            self,
            [
                ("gpus", 0 <= self.gpus <= 16, "between 0 and 16"),
                (
                    "image_pull_policy",
                    self.image_pull_policy in ("Always", "IfNotPresent", "Never"),
                    "Always, IfNotPresent or Never",
                ),
                ("run_as_user", self.run_as_user >= 0, "a non-root user id, or 0 for the image's own (non-root) USER"),
                ("run_as_group", self.run_as_group > 0, "a group id other than root's (more than 0)"),
                ("unschedulable_patience", self.unschedulable_patience > 0, "more than 0 seconds"),
                ("node_lost_timeout", self.node_lost_timeout >= 0, "zero or more seconds"),
                ("namespace_max_pods", self.namespace_max_pods >= 0, "0 (no cap across jobs) or more pods"),
                ("spot_fallback_after", self.spot_fallback_after >= 0, "0 (stay on spot) or more preemptions"),
                (
                    "oom_memory_factor",
                    self.oom_memory_factor == 0 or self.oom_memory_factor > 1,
                    "0 (an OOM fails the element) or more than 1, e.g. 2",
                ),
            ],
        )
        _check_memory_growth(self)


def _check_memory_growth(settings):
    from .api_errors import _quantity

    if not settings.oom_memory_factor:
        return
    ceiling = _quantity(settings.max_memory_limit) if settings.max_memory_limit else None
    if ceiling is None:
        raise ConfigurationError(
            "[kubeface] oom_memory_factor = %g needs max_memory_limit, the most memory one element may grow to "
            "(a Kubernetes quantity such as 16Gi); got %r" % (settings.oom_memory_factor, settings.max_memory_limit)
        )
    start = _quantity(settings.memory_limit or settings.memory_request)
    if start is not None and ceiling < start:
        raise ConfigurationError(
            "[kubeface] max_memory_limit = %s is below the memory a pod starts with (%s): raise it, or lower "
            "memory_limit" % (settings.max_memory_limit, settings.memory_limit or settings.memory_request)
        )


def check_job(settings):
    """What a job on this backend needs of the other settings: an image, and storage pods can reach."""
    if not settings.image:
        raise ConfigurationError(
            "[kubeface] image is not set: the kubernetes backend needs the task runner's image "
            "(build and push images/Dockerfile, see the README) in luigi.cfg or --kubeface-image"
        )
    if not storage_class(settings.storage_root).remote:
        raise ConfigurationError(
            "[kubeface] storage_root = %r is a local directory, which pods cannot reach: "
            "use a bucket (gs://bucket/prefix or s3://bucket/prefix) with the kubernetes backend"
            % settings.storage_root
        )


def job_details(settings):
    """Where the job's pods run, for job.json: what `kubeface reproduce` and `cleanup` need (no secrets)."""
    return {"image": settings.image, "namespace": settings.namespace, "kube_context": settings.kube_context}


def _plain(value):
    """Luigi's frozen JSON values back to plain dicts and lists (the Kubernetes client wants those)."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
