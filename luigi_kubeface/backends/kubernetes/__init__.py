"""Each attempt is its own bare pod on a Kubernetes cluster (GKE first, any cluster works).

One file per role: backend.py keeps the books between attempts and pods, api.py makes the calls
(with the one retry policy), watch.py follows the job's pods, pod_spec.py builds a pod,
pod_status.py reads its fate, settings.py holds its [kubeface] keys, tools.py serves `kubeface`.
Importing this package imports only settings.py, for ENTRY (what the backends' registry knows of it:
its keys, checks and job details); the backend itself and the Kubernetes client load when a job opens it.
"""

from ... import cost
from .. import BackendEntry
from . import settings


def _request(job_settings, out_of_memory=0):
    """What a pod of the job requests, with the memory its element has grown to after out_of_memory OOMs."""
    from .memory_growth import memory_of

    return cost.kubernetes_request(job_settings, memory_of(job_settings, out_of_memory)[0])


def _open(job_settings):
    from .backend import KubernetesBackend

    return KubernetesBackend(job_settings)


ENTRY = BackendEntry(
    _open,
    max_in_flight=200,  # pods: capped where Kubernetes copes
    max_in_flight_ceiling=settings.MAX_IN_FLIGHT_CEILING,
    ceiling_reason="Kubernetes misbehaves above",
    settings=settings.KubernetesSettings,
    check=settings.check_job,
    job_details=settings.job_details,
    tools="kubernetes.tools",
    request=_request,
)
