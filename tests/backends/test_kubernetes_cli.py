"""`kubeface logs --follow` and `kubeface cleanup` on a job whose pods run on the test cluster."""

import os
import subprocess
import sys

import pytest

from kube_support import chatty_nap, kube_settings, nap, pods, running_pods, start_master, wait_until
from support import REPO

pytestmark = pytest.mark.slow


def kubeface(args, cluster, tmp_path, timeout=120):
    """The command line in its own process, its cluster found through luigi.cfg as a user's would be."""
    config = tmp_path / "luigi.cfg"
    config.write_text("[kubeface]\nkubeconfig = %s\n" % cluster.kubeconfig)
    env = dict(os.environ, PYTHONPATH=REPO, LUIGI_CONFIG_PATH=str(config))
    return subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli"] + args,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=timeout,
    )


def test_logs_follow_streams_a_running_pod(kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root)
    master = start_master(settings, [6], "follow", function=chatty_nap)
    try:
        wait_until(lambda: running_pods(kube_cluster, kube_namespace), 60, "a running pod")
        run = kubeface(
            ["logs", "follow", "@0", "--follow", "--storage-root", gcs_root, "--namespace", kube_namespace],
            kube_cluster,
            tmp_path,
        )
        assert run.returncode == 0, run.stderr
        assert "napping for 6s" in run.stdout
        master.wait(timeout=120)
    finally:
        master.kill()
    assert master.returncode == 0, master.stdout.read()
    status = kubeface(["status", "follow", "--storage-root", gcs_root], kube_cluster, tmp_path)
    assert status.returncode == 0 and "1 elements: 1 done" in status.stdout, status.stdout + status.stderr
    listing = kubeface(["list", "--storage-root", gcs_root], kube_cluster, tmp_path)
    assert listing.returncode == 0 and "follow" in listing.stdout
    again = kubeface(
        ["reproduce", "follow", "@0", "--storage-root", gcs_root, "--image", kube_cluster.image], kube_cluster, tmp_path
    )
    assert again.returncode == 0 and "napping for 6s" in again.stdout, again.stdout + again.stderr
    assert (
        "docker run --rm --env-file " in again.stdout
        and " %s python -m luigi_kubeface.runner " % (kube_cluster.image) in again.stdout
    )  # the image from the settings (job.json is unsigned)


def test_cleanup_lists_then_deletes_the_pods_a_dead_master_left(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root)
    master = start_master(settings, [60, 61], "orphans", function=nap)
    try:
        wait_until(lambda: len(running_pods(kube_cluster, kube_namespace)) == 2, 60, "2 running pods")
    finally:
        master.kill()  # SIGKILL: no cleanup at all, the pods keep running
    dry = kubeface(
        ["cleanup", "orphans", "--storage-root", gcs_root, "--namespace", kube_namespace], kube_cluster, tmp_path
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would delete pod kf-orphans-") == 2
    assert len(pods(kube_cluster, kube_namespace)) == 2
    done = kubeface(
        ["cleanup", "orphans", "--storage-root", gcs_root, "--namespace", kube_namespace, "--yes"],
        kube_cluster,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("deleted pod kf-orphans-") == 2
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "the pods to be deleted")
