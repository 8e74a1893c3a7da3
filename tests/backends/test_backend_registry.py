"""The backends' registry loads a backend by its dotted path when it is named: a local job never imports
the Kubernetes backend nor its client (the Kubernetes package's settings module loads, as the flat
[kubeface] section declares every backend's keys)."""

import json
import subprocess
import sys

from luigi_kubeface import backends
from luigi_kubeface.backends.kubernetes.settings import KubernetesSettings

LOCAL_JOB = """
import json, sys
import luigi_kubeface
from luigi_kubeface import Client
assert list(Client(storage_root=sys.argv[1], backend="local").map(abs, [-1, -2])) == [1, 2]
print(json.dumps(sorted(name for name in sys.modules if "kubernetes" in name)))
"""


def test_a_local_job_imports_neither_the_kubernetes_backend_nor_its_client(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_JOB, str(tmp_path / "bucket")],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert set(loaded) <= {"luigi_kubeface.backends.kubernetes", "luigi_kubeface.backends.kubernetes.settings"}, loaded


def test_a_backend_named_by_its_dotted_path_loads_when_asked_for():
    entry = backends.backend_entry("kubernetes")
    assert entry.settings is KubernetesSettings and entry.max_in_flight_ceiling == 400
