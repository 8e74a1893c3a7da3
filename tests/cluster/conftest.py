"""Makes the cluster fixtures available to the tests in this directory.

(The ``slow`` marker is registered in the top-level pytest.ini.) The fixtures
share one cluster per session however they are imported, so a top-level
conftest may import them too.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.cluster.fixtures import kube_cluster, kube_namespace  # noqa: E402,F401
