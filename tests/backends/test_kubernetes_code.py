"""Code shipping on the real cluster: pods hold only the stock image (tests/infra/cluster/image.py)."""

import json
import os
import subprocess
import sys

import pytest

from kube_support import kube_settings, pods, wait_until
from luigi_kubeface import Client
from luigi_kubeface.errors import JobFailedError
from luigi_kubeface.bucket.catalog import open_job
from support import run_luigi
from test_code_shipping import fresh_import, make_project, total, write_pipeline

pytestmark = pytest.mark.slow


def luigi_on_cluster(cluster, namespace, fake_gcs, storage_root, folder):
    env = {"STORAGE_EMULATOR_HOST": fake_gcs.url, "GOOGLE_CLOUD_PROJECT": "test"}
    flags = [
        "--local-scheduler",
        "--workers",
        "2",
        "--kubeface-backend",
        "kubernetes",
        "--kubeface-storage-root",
        storage_root,
        "--kubeface-image",
        cluster.image,
        "--kubeface-namespace",
        namespace,
        "--kubeface-kubeconfig",
        cluster.kubeconfig,
        "--kubeface-cpu-request",
        "50m",
        "--kubeface-memory-limit",
        "2Gi",
        "--kubeface-poll-interval",
        "0.2",
        "--kubeface-key-dir",
        os.path.join(folder, "keys"),
        "--kubeface-pod-env",
        json.dumps(env),
    ]
    # Only the pipeline's own folder is on the master's path; the pods have none of it.
    return run_luigi(["--module", "grid_pipeline", "Total"] + flags, cwd=folder, env=dict(env, PYTHONPATH=folder))


def test_a_pipeline_with_a_helper_runs_on_pods_and_an_edit_reaches_them(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    folder = str(tmp_path / "project")
    write_pipeline(folder, offset=0)
    first = luigi_on_cluster(kube_cluster, kube_namespace, fake_gcs, gcs_root, folder)
    assert first.returncode == 0, first.stderr[-4000:]
    assert total(folder) == sum(i * 10 for i in range(6))

    write_pipeline(folder, offset=7000)  # an edit of the helper, and no image build
    os.unlink(os.path.join(folder, "total-6.txt"))
    second = luigi_on_cluster(kube_cluster, kube_namespace, fake_gcs, gcs_root, folder)
    assert second.returncode == 0, second.stderr[-4000:]
    assert total(folder) == sum(i * 10 + 7000 for i in range(6))
    assert "6 of them have results of other code" in second.stderr
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "finished pods to be deleted")


def test_a_project_inside_a_virtualenv_folder_ships_to_the_pods(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    """python3 -m venv x && mkdir x/analysis: the pods have only what the job ships, so it must ship."""
    venv = str(tmp_path / "x")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=300)
    folder = os.path.join(venv, "analysis")
    write_pipeline(folder, offset=0)
    first = luigi_on_cluster(kube_cluster, kube_namespace, fake_gcs, gcs_root, folder)
    assert first.returncode == 0, first.stderr[-4000:]
    assert total(folder) == sum(i * 10 for i in range(6))

    write_pipeline(folder, offset=300)
    os.unlink(os.path.join(folder, "total-6.txt"))
    second = luigi_on_cluster(kube_cluster, kube_namespace, fake_gcs, gcs_root, folder)
    assert second.returncode == 0, second.stderr[-4000:]
    assert total(folder) == sum(i * 10 + 300 for i in range(6))
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "finished pods to be deleted")


def test_a_package_the_image_lacks_stops_the_job_at_its_first_attempt(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path, monkeypatch
):
    # An installed distribution on the master (a site-packages folder of its own) that the image lacks.
    vendor = str(tmp_path / "vendor" / "site-packages")
    make_project(
        vendor,
        {
            "fakedep_kubeface/__init__.py": "VALUE = 1\n",
            "fakedep_kubeface-1.4.2.dist-info/METADATA": "Metadata-Version: 2.1\nName: fakedep-kubeface\nVersion: 1.4.2\n",
            "fakedep_kubeface-1.4.2.dist-info/top_level.txt": "fakedep_kubeface\n",
            "fakedep_kubeface-1.4.2.dist-info/RECORD": "fakedep_kubeface/__init__.py,,\n",
        },
    )
    monkeypatch.syspath_prepend(vendor)
    folder = str(tmp_path / "proj")
    make_project(
        folder, {"uses_dep.py": "import fakedep_kubeface\n\ndef f(x):\n    return x + fakedep_kubeface.VALUE\n"}
    )
    module = fresh_import(folder, "uses_dep", monkeypatch)
    settings = kube_settings(
        kube_cluster, kube_namespace, fake_gcs, gcs_root, retries=2, max_in_flight=2, key_dir=str(tmp_path / "keys")
    )
    with pytest.raises(JobFailedError) as caught:
        Client(settings).map(module.f, list(range(10)), job_id="lacks")
    text = str(caught.value)
    assert "stopped early" in text
    assert "fakedep-kubeface: the master has 1.4.2, the image has none" in text
    assert "RUN pip install fakedep-kubeface==1.4.2" in text
    job = open_job(gcs_root + "/lacks")
    records = [job.attempt_record(k, a) for k in job.storage.children("attempts/") for a in job.attempts(k.rstrip("/"))]
    assert 1 <= len(records) <= 2  # the attempts in flight when the first one ended, no retries
    assert all(r["outcome"] in ("unusable_input", "cancelled") for r in records)
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "pods to be deleted")
