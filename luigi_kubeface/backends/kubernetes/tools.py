"""The Kubernetes backend's tools for `kubeface` (a BackendTools): a job's pods, seen from any machine.

`kubeface logs --follow` streams a running pod's log; `kubeface cleanup` deletes the pods and the
Secret a job left. Both act in the namespace and context the user configured (cluster_target), and
take the job's job.json only as a hint: it is unsigned.
"""

from ...errors import ConfigurationError
from .api import CANCEL_GRACE, KubeApi
from .pod_spec import ATTEMPT_LABEL, ELEMENT_LABEL, job_selector, secret_name


def add_arguments(command):
    command.add_argument("--namespace", help="where the job's pods are (default: [kubeface] namespace)")
    command.add_argument("--kube-context", help="the kubeconfig context (default: [kubeface] kube_context)")


def follow_log(job, meta, settings, args, element, attempt, out):
    """Copy the element's running pod's log to out until the pod ends; False when no pod of it runs.

    attempt: the running attempt's id when the master's progress names one, else None (the element's
    running attempt, whichever it is).
    """
    api = _api(meta, settings, args)
    running = [
        p
        for p in job_pods(api, job.url)
        if p["metadata"]["labels"].get(ELEMENT_LABEL) == element
        and (attempt is None or p["metadata"]["labels"].get(ATTEMPT_LABEL) == attempt)
        and (p.get("status") or {}).get("phase") == "Running"
    ]
    if not running:
        return False
    api.follow_pod_log(running[-1]["metadata"]["name"], out)
    return True


def cleanup(job, meta, settings, args, dry_run):
    """Delete the job's pods and Secret (or only list the pods, on a dry run): descriptions of the pods."""
    api = _api(meta, settings, args)
    pods = job_pods(api, job.url)
    if not dry_run:
        for pod in pods:
            api.delete_pod(pod["metadata"]["name"], CANCEL_GRACE)
        api.delete_secret(secret_name(job.url))
    return [describe_pod(p) for p in pods]


def cluster_target(meta, settings, namespace=None, kube_context=None):
    """The namespace and context to act in: the configured ones (flags over [kubeface]), never job.json's alone.

    job.json is unsigned: a bucket writer must not point `cleanup --yes` at another namespace's pods.
    When it names another cluster place than the settings, the user has to pass it explicitly.
    """
    wanted = (namespace or settings.namespace, settings.kube_context if kube_context is None else kube_context)
    recorded = (meta.get("namespace") or wanted[0], meta.get("kube_context") or wanted[1])
    if recorded != wanted:
        raise ConfigurationError(
            "job.json says the job ran in namespace %r (context %r), but the settings say %r (context %r); "
            "job.json is not signed, so kubeface does not act on its word alone: pass --namespace %s%s to "
            "use that place, or set [kubeface] namespace / kube_context"
            % (
                recorded[0],
                recorded[1] or "current",
                wanted[0],
                wanted[1] or "current",
                recorded[0],
                " --kube-context %s" % recorded[1] if recorded[1] != wanted[1] else "",
            )
        )
    return wanted


def job_pods(api, job_url):
    """The job's pods, oldest attempt first."""
    pods, _ = api.list_pods(job_selector(job_url))
    return sorted(pods.values(), key=lambda p: p["metadata"]["labels"].get(ATTEMPT_LABEL, ""))


def describe_pod(pod):
    labels, status = pod["metadata"]["labels"], pod.get("status") or {}
    return "%s (element %s, attempt %s, %s)" % (
        pod["metadata"]["name"],
        labels.get(ELEMENT_LABEL),
        labels.get(ATTEMPT_LABEL),
        status.get("phase", "Pending"),
    )


def _api(meta, settings, args):
    """The cluster the job ran on, as the configuration (and the command's flags) say: see cluster_target."""
    namespace, context = cluster_target(meta, settings, args.namespace, args.kube_context)
    return KubeApi(settings.replace(namespace=namespace, kube_context=context))
