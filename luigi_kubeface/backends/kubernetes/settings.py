"""The Kubernetes backend's own settings: where and how each attempt's pod runs.

They are keys of the one flat `[kubeface]` section (and `--kubeface-*` flags): Settings carries
every backend's keys beside its own (settings.py), so users write `image = ...`, never a
sub-section. This module declares them, checks them, and says what a job needs of the rest.
"""

from dataclasses import dataclass, field

from ...errors import ConfigurationError, check_ranges
from ...storage import storage_class

_STRING_MAPS = ("node_selector", "pod_env", "pod_labels", "pod_annotations")


@dataclass(frozen=True)
class KubernetesSettings:
    image: str = ""  # the task runner's image (images/Dockerfile), e.g. us-docker.pkg.dev/p/r/kubeface:1
    namespace: str = "default"
    kubeconfig: str = ""  # empty: $KUBECONFIG or ~/.kube/config, else the in-cluster service account
    kube_context: str = ""  # empty: the kubeconfig's current context
    service_account: str = ""  # for Workload Identity (GCS) or IRSA (S3): bucket access without keys; empty: the default one
    mount_service_account_token: bool = False  # pods do not need to talk to the API server
    cpu_request: str = "1"
    memory_request: str = "1Gi"
    cpu_limit: str = ""  # empty: no CPU limit
    memory_limit: str = ""  # empty: the memory request (a pod over it is OOMKilled, not the node)
    ephemeral_storage_request: str = ""  # local disk for blobs streamed through files (README); empty: none
    gpus: int = 0  # nvidia.com/gpu per pod
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)  # Kubernetes toleration objects
    spot: bool = False  # run on GKE Spot VMs (evictions are retried, not counted as failures)
    spot_fallback_after: int = 0  # preemptions of one element after which its next attempt runs off spot; 0: never
    oom_memory_factor: float = 0.0  # an OOMKilled element runs again with its memory times this (e.g. 2); 0: fail
    max_memory_limit: str = ""  # the most memory an element may grow to (oom_memory_factor needs it), e.g. 16Gi
    pod_env: dict = field(default_factory=dict)  # extra environment for the runner (never secrets)
    pod_labels: dict = field(default_factory=dict)
    pod_annotations: dict = field(default_factory=dict)
    pod_params_annotation: bool = True  # each pod's element parameters as an annotation (readable by pod readers)
    image_pull_policy: str = "IfNotPresent"
    safe_to_evict: bool = False  # let the cluster autoscaler evict running pods to scale down
    run_as_user: int = 65532  # pods never run as root; 0: the image's own USER, which runAsNonRoot checks
    run_as_group: int = 65532  # and never with group 0: without it the runtime drops the image's group
    unschedulable_patience: float = 600.0  # seconds a pod may wait for a node before its element fails
    node_lost_timeout: float = 300.0  # seconds a pod stays bound to a NotReady node before it is retried
    keep_failed_pods: bool = False  # keep failed pods for `kubectl describe` (they count toward nothing)
    leave_pods_on_exit: bool = False  # when the master exits, leave running pods to a later rerun
    namespace_max_pods: int = 0  # a cap across every job's pods in the namespace, shared fairly; 0: none

    def __post_init__(self):
        """Checks these keys (on a Settings too, which carries them): Luigi's frozen JSON made plain, ranges."""
        for name in _STRING_MAPS:  # Luigi hands frozen dicts
            value = getattr(self, name)
            if not isinstance(value, dict) and hasattr(value, "items"):
                object.__setattr__(self, name, dict(value))
            elif not isinstance(value, dict):
                raise ConfigurationError("[kubeface] %s = %r must be a JSON object, e.g. {\"key\": \"value\"}"
                                         % (name, value))
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in getattr(self, name).items()):
                raise ConfigurationError("[kubeface] %s = %r: keys and values must be strings (quote numbers)"
                                         % (name, value))
        tolerations = self.tolerations
        if not isinstance(tolerations, (list, tuple)) or not all(hasattr(t, "items") for t in tolerations):
            raise ConfigurationError("[kubeface] tolerations = %r must be a JSON list of toleration objects, "
                                     "e.g. [{\"key\": \"dedicated\", \"operator\": \"Exists\"}]" % (tolerations,))
        object.__setattr__(self, "tolerations", [_plain(t) for t in tolerations])
        check_ranges(self, [
            ("gpus", 0 <= self.gpus <= 16, "between 0 and 16"),
            ("image_pull_policy", self.image_pull_policy in ("Always", "IfNotPresent", "Never"),
             "Always, IfNotPresent or Never"),
            ("run_as_user", self.run_as_user >= 0, "a non-root user id, or 0 for the image's own (non-root) USER"),
            ("run_as_group", self.run_as_group > 0, "a group id other than root's (more than 0)"),
            ("unschedulable_patience", self.unschedulable_patience > 0, "more than 0 seconds"),
            ("node_lost_timeout", self.node_lost_timeout >= 0, "zero or more seconds"),
            ("namespace_max_pods", self.namespace_max_pods >= 0, "0 (no cap across jobs) or more pods"),
            ("spot_fallback_after", self.spot_fallback_after >= 0, "0 (stay on spot) or more preemptions"),
            ("oom_memory_factor", self.oom_memory_factor == 0 or self.oom_memory_factor > 1,
             "0 (an OOM fails the element) or more than 1, e.g. 2"),
        ])
        _check_memory_growth(self)


def _check_memory_growth(settings):
    from .api import _quantity

    if not settings.oom_memory_factor:
        return
    ceiling = _quantity(settings.max_memory_limit) if settings.max_memory_limit else None
    if ceiling is None:
        raise ConfigurationError(
            "[kubeface] oom_memory_factor = %g needs max_memory_limit, the most memory one element may grow to "
            "(a Kubernetes quantity such as 16Gi); got %r" % (settings.oom_memory_factor, settings.max_memory_limit))
    start = _quantity(settings.memory_limit or settings.memory_request)
    if start is not None and ceiling < start:
        raise ConfigurationError(
            "[kubeface] max_memory_limit = %s is below the memory a pod starts with (%s): raise it, or lower "
            "memory_limit" % (settings.max_memory_limit, settings.memory_limit or settings.memory_request))


def check_job(settings):
    """What a job on this backend needs of the other settings: an image, and storage pods can reach."""
    if not settings.image:
        raise ConfigurationError(
            "[kubeface] image is not set: the kubernetes backend needs the task runner's image "
            "(build and push images/Dockerfile, see the README) in luigi.cfg or --kubeface-image")
    if not storage_class(settings.storage_root).remote:
        raise ConfigurationError(
            "[kubeface] storage_root = %r is a local directory, which pods cannot reach: "
            "use a bucket (gs://bucket/prefix or s3://bucket/prefix) with the kubernetes backend"
            % settings.storage_root)


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
