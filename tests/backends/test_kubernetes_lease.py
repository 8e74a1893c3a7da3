"""One master per job on Kubernetes: no adoption from a live master, cleanup spares a running job, the
job's Secret comes back when deleted mid-job."""

import signal
import time

import pytest

from kube_support import kube_settings, pods, running_pods, start_master, wait_until
from luigi_kubeface.job.definition import Job
from test_kubernetes_cli import kubeface

pytestmark = pytest.mark.slow


def test_a_second_master_neither_adopts_from_a_live_one_nor_fails_on_its_cancellations(
    kube_cluster, kube_namespace, fake_gcs, gcs_root
):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, retries=0, lease_seconds=3)
    items = [4 + i / 10 for i in range(9)]
    first = start_master(settings, items, "two-masters")
    second = None
    try:
        wait_until(lambda: len(running_pods(kube_cluster, kube_namespace)) >= 3, 60, "the first master's pods")
        second = start_master(settings, items, "two-masters")
        time.sleep(3)  # the second master is up, and waits
        first.send_signal(signal.SIGINT)  # the first deletes its pods and records them cancelled
        first_output = first.stdout.read()
        first.wait(timeout=60)
        output = second.stdout.read()
        second.wait(timeout=300)
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert "MASTER DONE" not in first_output
    assert "MASTER DONE" in output, output[-3000:]  # retries=0: one cancellation counted as a failure fails it
    job = Job("two-masters", settings.storage_root).store
    assert len(job.finished()) == 9
    for key in job.finished():  # the first master's attempts cancelled, then one success by the second
        outcomes = [job.attempt_record(key, a).get("outcome") for a in job.attempts(key)]
        assert outcomes.count("success") == 1 and set(outcomes) <= {"success", "cancelled"}, outcomes
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "no pod left")


def test_cleanup_spares_a_running_job_and_a_forced_one_gets_its_secret_back(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, retries=0, lease_seconds=3)
    master = start_master(settings, [20, 20.1, 20.2], "cleanup-live")  # outlast both cleanups
    try:
        wait_until(lambda: len(running_pods(kube_cluster, kube_namespace)) == 3, 60, "3 running pods")
        refused = kubeface(
            ["cleanup", "cleanup-live", "--storage-root", gcs_root, "--namespace", kube_namespace, "--yes"],
            kube_cluster,
            tmp_path,
        )
        assert refused.returncode != 0 and "is running" in refused.stderr and "--force" in refused.stderr
        assert len(running_pods(kube_cluster, kube_namespace)) == 3
        forced = kubeface(
            ["cleanup", "cleanup-live", "--storage-root", gcs_root, "--namespace", kube_namespace, "--yes", "--force"],
            kube_cluster,
            tmp_path,
        )
        assert forced.returncode == 0 and forced.stdout.count("deleted pod kf-cleanup-live-") == 3, forced.stderr
        output = master.stdout.read()
        master.wait(timeout=300)
    finally:
        master.kill()
    # Its pods were deleted (retried as interruptions) and its Secret too: the master made it again.
    assert "MASTER DONE" in output, output[-3000:]
    assert "created it again" in output and "[kubeface]" not in output.split("created it again")[0][-400:]
    assert len(Job("cleanup-live", settings.storage_root).store.finished()) == 3
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "no pod left")
