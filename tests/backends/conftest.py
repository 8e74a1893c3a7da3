"""The real Kubernetes control plane and node agent (tests/cluster) for the backend's tests."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.cluster.fixtures import kube_cluster, kube_namespace  # noqa: E402,F401
