"""Faults while a job runs on Kubernetes: nothing lost, nothing run twice, no pods left behind.

Each test asserts every result is present exactly once and intact, and that no pod remains.
"""

import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from kube_support import kube_settings, nap, pods, running_pods, wait_until
from luigi_kubeface import Client
from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.job.definition import Job
from luigi_kubeface.storage import open_storage
from support import REPO, TESTS, run_luigi
from infra.cluster.fixtures import TEST_IMAGE
from infra.cluster.node_agent import NodeAgent, NodeSpec

pytestmark = pytest.mark.slow


def wrote_its_result(record):
    """The attempt whose result is the element's. An evicted pod finishes writing its result within its grace
    period (the runner defers SIGTERM once the element returned) while its replacement may run: the replacement
    then records success with result_written False, and its result is dropped."""
    return record["outcome"] == "success" and record.get("result_written", True) is not False


def assert_each_result_once(storage_root, job_id, values):
    """All results load (signature and digest checked), and each element's result was written exactly once."""
    job = Job(job_id, storage_root).store
    keys = job.finished()
    assert len(keys) == len(values)
    assert sorted(job.load_result(k) for k in keys) == sorted(values)
    successes = {k: [a for a in job.attempts(k) if wrote_its_result(job.attempt_record(k, a))] for k in keys}
    assert all(len(s) == 1 for s in successes.values()), {k: s for k, s in successes.items() if len(s) != 1}
    return job


def run_through_an_outage(settings, items, job_id, started, stop, start, seconds=30):
    """Map items while a component is down for `seconds` once `started()` holds; prints how long recovery took."""
    outage = {}

    def break_it():
        wait_until(started, 120, "the job to be under way")
        stop()
        outage["stopped"] = time.monotonic()
        time.sleep(seconds)
        start()
        outage["back"] = time.monotonic()

    thread = threading.Thread(target=break_it, daemon=True)
    thread.start()
    results = Client(settings).map(nap, items, job_id=job_id)
    finished = time.monotonic()
    thread.join()
    assert list(results) == items
    print(
        "%s: down %.0fs; the job finished %.0fs after it came back"
        % (job_id, outage["back"] - outage["stopped"], finished - outage["back"])
    )


def test_api_server_down_for_30s_mid_job(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    """The watch resumes after its connection drops; creates and deletes wait; nothing is lost or run twice."""
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, max_in_flight=40)
    control_plane = kube_cluster.control_plane
    items = [1 + i / 1000 for i in range(200)]
    run_through_an_outage(
        settings,
        items,
        "api-outage",
        started=lambda: len(running_pods(kube_cluster, kube_namespace)) >= 10,
        stop=lambda: control_plane.stop_component("kube-apiserver"),
        start=lambda: control_plane.start_component("kube-apiserver"),
    )
    assert_each_result_once(gcs_root, "api-outage", items)
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "pods to be deleted after the outage")


def test_master_killed_then_the_same_luigi_command_adopts_and_finishes(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    env = {"STORAGE_EMULATOR_HOST": fake_gcs.url, "GOOGLE_CLOUD_PROJECT": "test"}
    pod_env = dict(env)  # pods get tests/pipelines/toy.py as the job ships it
    n = 16
    command = [
        "--module",
        "pipelines.toy",
        "SumSquares",
        "--n",
        str(n),
        "--local-scheduler",
        "--Squares-mode",
        "sleep",
        "--Squares-bad",
        "[%s]" % ",".join(map(str, range(n))),
        "--Squares-seconds",
        "6",
        "--kubeface-backend",
        "kubernetes",
        "--kubeface-storage-root",
        gcs_root,
        "--kubeface-image",
        kube_cluster.image,
        "--kubeface-namespace",
        kube_namespace,
        "--kubeface-kubeconfig",
        kube_cluster.kubeconfig,
        "--kubeface-cpu-request",
        "50m",
        "--kubeface-max-in-flight",
        "8",
        "--kubeface-pod-env",
        json.dumps(pod_env),
    ]
    full_env = dict(
        os.environ, LUIGI_CONFIG_PATH=os.path.join(REPO, "luigi.cfg"), PYTHONPATH=os.pathsep.join([TESTS, REPO]), **env
    )
    luigi = os.path.join(os.path.dirname(sys.executable), "luigi")
    with open(tmp_path / "first-master.log", "w") as output:
        master = subprocess.Popen([luigi] + command, cwd=str(tmp_path), env=full_env, stdout=output, stderr=output)
    try:
        wait_until(
            lambda: len(running_pods(kube_cluster, kube_namespace)) == 8 or master.poll() is not None,
            120,
            "8 running pods",
        )
        assert master.poll() is None, (tmp_path / "first-master.log").read_text()[-3000:]
        master.send_signal(signal.SIGKILL)  # no cleanup: its 8 pods keep running
        master.wait(timeout=30)
    finally:
        master.kill()
    left_running = len(running_pods(kube_cluster, kube_namespace))
    result = run_luigi(command, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / ("sum-%d.txt" % n)).read_text() == str(sum(x * x for x in range(n)))
    assert left_running > 0 and "adopted" in result.stderr + result.stdout
    (job_id,) = [c.rstrip("/") for c in open_storage(gcs_root).children("") if c.startswith("pipelines.toy.Squares")]
    job = assert_each_result_once(gcs_root, job_id, [x * x for x in range(n)])
    assert all(len(job.attempts(k)) == 1 for k in job.finished())  # reused or adopted: nothing ran twice
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "pods to be deleted")


@pytest.fixture
def second_node(stand_in_cluster, tmp_path):
    """node-2, run by its own stand-in agent, so that it can go NotReady while node-1 carries on."""
    agent = NodeAgent(
        stand_in_cluster.kubeconfig,
        images={TEST_IMAGE: stand_in_cluster.image_bin},
        workdir=tmp_path / "agent-2",
        nodes=[NodeSpec("node-2", cpu="8", memory="16Gi", pods=110)],
    )
    agent.start()
    agent.wait_nodes_schedulable(60)
    yield agent
    agent.set_node_ready("node-2", True)
    agent.stop(delete_nodes=True)


def kill_some_pods(cluster, namespace, count, nodes=None):
    """SIGKILL the first process of `count` running pods' containers, one every 0.7 s; their names."""
    rng, killed = random.Random(7), []
    wait_until(lambda: len(running_pods(cluster, namespace)) >= 10, 180, "10 running pods")
    deadline = time.monotonic() + 120
    while len(killed) < count:
        assert time.monotonic() < deadline, "killed only %s" % killed
        running = running_pods(cluster, namespace)
        if running:
            pod = rng.choice(running)
            try:
                node = nodes[pod["spec"]["nodeName"]] if nodes else cluster.node
                node.kill_pod_process(namespace, pod["metadata"]["name"])
                killed.append(pod["metadata"]["name"])
            except (KeyError, LookupError, ProcessLookupError):
                pass
        time.sleep(0.7)
    return killed


def test_a_node_lost_while_another_carries_on(stand_in_cluster, stand_in_namespace, fake_gcs, gcs_root, second_node):
    """Stand-in: several nodes, one of them NotReady while the other carries on (a real node is one here)."""
    cluster, namespace = stand_in_cluster, stand_in_namespace
    settings = kube_settings(
        cluster,
        namespace,
        fake_gcs,
        gcs_root,
        max_in_flight=20,
        retries=2,
        node_lost_timeout=3,
        unschedulable_patience=120,
    )
    items = [3 + i / 1000 for i in range(40)]
    killed = []

    def chaos():
        killed.extend(
            kill_some_pods(cluster, namespace, len(items) // 10, nodes={"node-1": cluster.agent, "node-2": second_node})
        )
        second_node.set_node_ready("node-2", False)  # its pods are evicted after node_lost_timeout

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    results = Client(settings).map(nap, items, job_id="chaos")
    thread.join()
    assert list(results) == items and len(killed) == 4
    assert_each_result_once(gcs_root, "chaos", items)
    wait_until(lambda: not pods(cluster, namespace), 60, "pods to be deleted")


def test_pods_killed_and_the_kubelet_stopped_mid_job(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    """Real node: 4 containers' first process SIGKILLed, then the kubelet dies: the node goes NotReady, its
    pods are given up after node_lost_timeout; once a kubelet is back every element has its result once."""
    settings = kube_settings(
        kube_cluster,
        kube_namespace,
        fake_gcs,
        gcs_root,
        max_in_flight=12,
        retries=2,
        node_lost_timeout=3,
        unschedulable_patience=300,
    )
    items = [3 + i / 1000 for i in range(24)]
    seen = {}

    def chaos():
        seen["killed"] = kill_some_pods(kube_cluster, kube_namespace, 4)
        kube_cluster.node.stop_kubelet()
        try:
            wait_until(lambda: not kube_cluster.node.ready(), 60, "the node to go NotReady")
            seen["not_ready"] = True
            time.sleep(5)  # past node_lost_timeout
        finally:
            kube_cluster.node.start_kubelet()

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    results = Client(settings).map(nap, items, job_id="chaos-real")
    thread.join()
    assert list(results) == items and len(seen["killed"]) == 4 and seen["not_ready"]
    assert_each_result_once(gcs_root, "chaos-real", items)
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 90, "pods to be deleted")


def test_containerd_restarted_mid_job(kube_cluster, kube_namespace, fake_gcs, gcs_root):
    """Real node: containerd restarts (an upgrade, a crash) while pods run: their containers live on, the job ends
    with every result once."""
    settings = kube_settings(kube_cluster, kube_namespace, fake_gcs, gcs_root, max_in_flight=8, retries=2)
    items = [4 + i / 1000 for i in range(16)]

    def restart():
        wait_until(lambda: len(running_pods(kube_cluster, kube_namespace)) >= 4, 120, "4 running pods")
        kube_cluster.node.restart_containerd()

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    results = Client(settings).map(nap, items, job_id="containerd-restart")
    thread.join()
    assert list(results) == items
    assert_each_result_once(gcs_root, "containerd-restart", items)
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "pods to be deleted")


def test_bucket_down_for_30s_mid_job(kube_cluster, kube_namespace, own_gcs):
    """Pods and the master wait out the bucket's outage (or the pod is run again): nothing lost."""
    root = "gs://outage/jobs"
    settings = kube_settings(kube_cluster, kube_namespace, own_gcs, root, max_in_flight=8, retries=2)
    storage = open_storage(root + "/outage", retry_deadline=60)
    items = [1.5 + i / 1000 for i in range(24)]
    run_through_an_outage(
        settings,
        items,
        "outage",
        started=lambda: len(storage.list(naming.RESULTS_PREFIX)) >= 4,
        stop=own_gcs.stop,
        start=own_gcs.start,
    )
    assert_each_result_once(root, "outage", items)
    assert not storage.list(naming.QUARANTINE_PREFIX)
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "pods to be deleted")


def slow_the_first_time(x, marker_url):
    """Element 0's first attempt straggles (10 minutes: its backup wins however loaded the machine is, and the
    straggler's pod is deleted then, so nobody waits for it); every other attempt takes a second. The marker is in the
    bucket: pods share nothing else with the test."""
    if x == 0 and open_storage(marker_url).write_if_absent("straggled-0", b"1"):
        time.sleep(600)
        return "straggler"
    time.sleep(1)
    return "attempt that finished first"


def test_straggler_gets_a_backup_pod_and_the_first_result_wins(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    settings = kube_settings(
        kube_cluster,
        kube_namespace,
        fake_gcs,
        gcs_root,
        max_in_flight=12,
        speculation=True,
        speculation_min_done=0.5,
        speculation_multiple=3,
    )
    seen = {}
    results = Client(settings).map(
        functools.partial(slow_the_first_time, marker_url=gcs_root + "/markers"),
        range(12),
        job_id="straggler",
        on_progress=lambda p: seen.update(speculated=p.speculated),
    )
    assert list(results) == ["attempt that finished first"] * 12 and seen["speculated"] == 1
    job = Job("straggler", gcs_root).store
    (key,) = [k for k in job.finished() if len(job.attempts(k)) == 2]
    outcomes = sorted(job.attempt_record(key, a)["outcome"] for a in job.attempts(key))
    assert outcomes == ["cancelled", "success"]  # the straggler's pod was deleted before it could upload
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "both pods of the element to be deleted")
