"""Each attempt is its own bare pod on a Kubernetes cluster (GKE first, any cluster works).

One file per role: backend.py keeps the books between attempts and pods, api.py makes the calls
(with the one retry policy), watch.py follows the job's pods, pod_spec.py builds a pod,
pod_status.py reads its fate, settings.py holds its [kubeface] keys, tools.py serves `kubeface`.
Importing this package imports none of them (nor the Kubernetes client).
"""
