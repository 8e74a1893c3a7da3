"""Registers the ``slow`` marker and the cluster fixtures for tests in this directory.

The fixtures are imported as ``tests.cluster.fixtures`` (the same module a
top-level conftest should import), so one session starts one cluster.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.cluster.fixtures import kube_cluster, kube_namespace  # noqa: E402,F401


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs the local Kubernetes control plane (minutes on first build)")
