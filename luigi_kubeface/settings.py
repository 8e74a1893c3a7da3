"""Settings as one frozen object, built once from the `[kubeface]` config and per-task overrides.

Nothing else reads config files or environment variables for settings: the engine and the
backends receive this object.
"""

import dataclasses
import os
from dataclasses import dataclass, field

from .errors import ConfigurationError

MAX_IN_FLIGHT_CEILING = 400  # Kubernetes misbehaves above roughly this many pods at once


@dataclass(frozen=True)
class Settings:
    backend: str = "local"
    storage_root: str = "kubeface-storage"
    max_in_flight: int = 0  # 0: the backend's default (local: cores, kubernetes: 200)
    retries: int = 1  # further attempts of an element after its first one failed
    retry_backoff: float = 10.0  # seconds before the first retry; doubles up to max_retry_backoff
    max_retry_backoff: float = 600.0
    failure_budget: float = 0.1  # the job stops once more than this share of elements failed for good
    element_timeout: float = 86400.0  # seconds an attempt may run before it is killed
    poll_interval: float = 0.5
    storage_retry_deadline: float = 600.0  # how long transient storage errors are retried
    lease_seconds: float = 60.0  # a master's hold on its job lapses this long after its last heartbeat
    key_dir: str = "~/.config/luigi-kubeface/keys"  # one signing key per job, never in the bucket
    signing_key_file: str = ""  # one key for every job instead (teams sharing results across machines)
    # -- Your code: shipped with each job (see code_package.py), and which results it may reuse ---
    code_include: str = ""  # more modules (a.b) or files and folders (data too) to ship, comma-separated
    code_exclude: str = ""  # modules never shipped (they must be in the image), comma-separated
    code_max_bytes: int = 64 * 1024 * 1024  # refuse to ship more code than this
    reuse_results: str = "same_code"  # same_code: recompute results of other code; any: Luigi's "output exists"
    # -- Results: which summary value ranks elements (`kubeface results`, the status page) ------
    result_metric: str = ""  # a summary value's name (e.g. accuracy); empty: the first one
    result_direction: str = "maximize"  # maximize: the highest value is best; minimize: the lowest

    # -- Kubernetes (backend = kubernetes): where and how each attempt's pod runs ------------
    image: str = ""  # the task runner's image (images/Dockerfile), e.g. us-docker.pkg.dev/p/r/kubeface:1
    namespace: str = "default"
    kubeconfig: str = ""  # empty: $KUBECONFIG or ~/.kube/config, else the in-cluster service account
    kube_context: str = ""  # empty: the kubeconfig's current context
    service_account: str = ""  # for Workload Identity (GCS access without keys); empty: the default one
    mount_service_account_token: bool = False  # pods do not need to talk to the API server
    gcs_key_secret: str = ""  # a Secret with key.json, mounted for GCS credentials when Workload Identity is not used
    cpu_request: str = "1"
    memory_request: str = "1Gi"
    cpu_limit: str = ""  # empty: no CPU limit
    memory_limit: str = ""  # empty: the memory request (a pod over it is OOMKilled, not the node)
    ephemeral_storage_request: str = ""  # local disk for blobs streamed through files (README); empty: none
    gpus: int = 0  # nvidia.com/gpu per pod
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)  # Kubernetes toleration objects
    spot: bool = False  # run on GKE Spot VMs (evictions are retried, not counted as failures)
    pod_env: dict = field(default_factory=dict)  # extra environment for the runner (never secrets)
    pod_labels: dict = field(default_factory=dict)
    pod_annotations: dict = field(default_factory=dict)
    pod_params_annotation: bool = True  # each pod's element parameters as an annotation (readable by pod readers)
    image_pull_policy: str = "IfNotPresent"
    safe_to_evict: bool = False  # let the cluster autoscaler evict running pods to scale down
    run_as_user: int = 65532  # pods never run as root (the image's user)
    unschedulable_patience: float = 600.0  # seconds a pod may wait for a node before its element fails
    node_lost_timeout: float = 300.0  # seconds a pod stays bound to a NotReady node before it is retried
    keep_failed_pods: bool = False  # keep failed pods for `kubectl describe` (they count toward nothing)
    leave_pods_on_exit: bool = False  # when the master exits, leave running pods to a later rerun
    luigid_elements: int = 500  # a map task lists up to this many elements in luigid, one task each
    speculation: bool = False  # launch one backup attempt of a straggler; the first result wins
    speculation_min_done: float = 0.1  # share of the elements to run that must be done first
    speculation_multiple: float = 3.0  # a straggler ran longer than this multiple of the median

    def __post_init__(self):
        from .backends import check_backend_name

        check_backend_name(self.backend)
        if not self.storage_root:
            raise ConfigurationError("[kubeface] storage_root is empty: set a directory or gs://bucket/prefix")
        if "://" not in self.storage_root:  # local paths are made absolute once, for every process
            object.__setattr__(self, "storage_root", os.path.abspath(os.path.expanduser(self.storage_root)))
        for name in ("node_selector", "pod_env", "pod_labels", "pod_annotations"):  # Luigi hands frozen dicts
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
        if self.backend == "kubernetes":
            if not self.image:
                raise ConfigurationError(
                    "[kubeface] image is not set: the kubernetes backend needs the task runner's image "
                    "(build and push images/Dockerfile, see the README) in luigi.cfg or --kubeface-image")
            if not self.storage_root.startswith("gs://"):
                raise ConfigurationError(
                    "[kubeface] storage_root = %r is a local directory, which pods cannot reach: "
                    "use a bucket, gs://bucket/prefix, with the kubernetes backend" % self.storage_root)
        checks = [
            ("max_in_flight", 0 <= self.max_in_flight <= MAX_IN_FLIGHT_CEILING,
             "between 0 (backend default) and %d (Kubernetes misbehaves above)" % MAX_IN_FLIGHT_CEILING),
            ("retries", 0 <= self.retries <= 100, "between 0 and 100"),
            ("retry_backoff", self.retry_backoff >= 0, "zero or more seconds"),
            ("max_retry_backoff", self.max_retry_backoff >= self.retry_backoff, "at least retry_backoff"),
            ("failure_budget", 0 <= self.failure_budget <= 1, "a share between 0 and 1"),
            ("element_timeout", self.element_timeout > 0, "more than 0 seconds"),
            ("poll_interval", 0 < self.poll_interval <= 60, "between 0 and 60 seconds"),
            ("storage_retry_deadline", self.storage_retry_deadline >= 0, "zero or more seconds"),
            ("lease_seconds", self.lease_seconds > 0, "more than 0 seconds"),
            ("key_dir", bool(self.key_dir), "a private directory for the jobs' signing keys"),
            ("code_max_bytes", self.code_max_bytes > 0, "more than 0 bytes"),
            ("reuse_results", self.reuse_results in ("same_code", "any"),
             "same_code (recompute results made by other code) or any (reuse every result, as Luigi does)"),
            ("result_direction", self.result_direction in ("maximize", "minimize"),
             "maximize (the highest result_metric is best) or minimize (the lowest is)"),
            ("gpus", 0 <= self.gpus <= 16, "between 0 and 16"),
            ("image_pull_policy", self.image_pull_policy in ("Always", "IfNotPresent", "Never"),
             "Always, IfNotPresent or Never"),
            ("run_as_user", self.run_as_user > 0, "a non-root user id (more than 0)"),
            ("unschedulable_patience", self.unschedulable_patience > 0, "more than 0 seconds"),
            ("node_lost_timeout", self.node_lost_timeout >= 0, "zero or more seconds"),
            ("luigid_elements", self.luigid_elements >= 0, "zero or more elements"),
            ("speculation_min_done", 0 < self.speculation_min_done <= 1, "a share above 0, at most 1"),
            ("speculation_multiple", self.speculation_multiple >= 1, "at least 1 (times the median duration)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigurationError(
                    "[kubeface] %s = %r is out of range: it must be %s" % (name, getattr(self, name), expected)
                )

    def job_details(self):
        """Where a job runs, for job.json: what `kubeface reproduce` and `cleanup` need (no secrets)."""
        details = {"backend": self.backend}
        if self.backend == "kubernetes":
            details.update(image=self.image, namespace=self.namespace, kube_context=self.kube_context)
        return details

    @property
    def code_include_list(self):
        return tuple(p.strip() for p in self.code_include.split(",") if p.strip())

    @property
    def code_exclude_list(self):
        return tuple(p.strip() for p in self.code_exclude.split(",") if p.strip())

    @property
    def cap(self):
        """The hard cap on attempts in flight."""
        from .backends import default_max_in_flight

        return self.max_in_flight or default_max_in_flight(self.backend)

    def replace(self, **overrides):
        """A copy with overrides, refusing names that are not settings (typos must not pass silently)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(
                "unknown kubeface setting(s) %s: known settings are %s" % (", ".join(unknown), ", ".join(sorted(known)))
            )
        return dataclasses.replace(self, **overrides)


def _plain(value):
    """Luigi's frozen JSON values back to plain dicts and lists (the Kubernetes client wants those)."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
