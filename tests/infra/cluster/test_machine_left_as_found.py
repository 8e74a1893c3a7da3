"""A real node leaves the machine as it found it, even when the process that started it is killed (SIGKILL)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from . import machine_state

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[2]

# A process that starts its own cluster with a real node, runs a pod, says so, then waits to be killed.
START_AND_WAIT = """
import sys, time
from infra.cluster.fixtures import start_real_cluster, pod_body
from infra.cluster.pod_network import PodNetwork
network = PodNetwork.allocate()
cluster = start_real_cluster(sys.argv[1], network)
ns = cluster.create_namespace("crash")
cluster.core().create_namespaced_pod(ns, pod_body("p", cluster.image, ["sleep", "600"]))
cluster.wait_pod_phase(ns, "p", "Running", timeout=120)
print("READY", network.bridge, cluster.node.cgroup, flush=True)
time.sleep(3600)
"""


def machine():
    """What a node may change, as comparable values."""
    return {
        "sysctls": machine_state.read_sysctls(),
        "firewall": machine_state.save_firewall(),
        "fixed": {p: os.path.lexists(p) for p in machine_state.FIXED_PATHS},
        # bridges only: the session's own node adds and removes pods' veths at any time
        "links": sorted(n for n in os.listdir("/sys/class/net") if n.startswith("kubeface")),
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="a real node needs root")
def test_a_node_whose_test_process_is_killed_leaves_nothing_behind():
    before = machine()
    # A short folder: the kubelet and containerd make unix sockets under it (at most 104 bytes a path).
    work = Path(tempfile.mkdtemp(prefix="kf-crash-", dir="/tmp"))
    process = subprocess.Popen(
        [sys.executable, "-c", START_AND_WAIT, str(work)],
        cwd=str(TESTS),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(TESTS)),
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("READY"):
                break
        assert lines and lines[-1].startswith("READY"), "".join(lines[-40:])
        _, bridge, cgroup = lines[-1].split()
        during = machine()
        assert bridge in during["links"] and machine_state.cgroup_dirs(cgroup)
        assert machine_state.mounts_under(work)  # containerd's snapshots, the kubelet's root: mounted
    finally:
        process.send_signal(signal.SIGKILL)  # no atexit, no finally: only the watchdog is left to clean up
        process.wait(timeout=30)
        process.stdout.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (
        machine() != before or machine_state.mounts_under(work) or machine_state.cgroup_dirs(cgroup)
    ):
        time.sleep(0.5)
    after = machine()
    assert after["sysctls"] == before["sysctls"]
    assert after["firewall"] == before["firewall"], json.dumps([before["firewall"], after["firewall"]])[:3000]
    assert after["fixed"] == before["fixed"] and after["links"] == before["links"]
    assert not machine_state.mounts_under(work) and not machine_state.cgroup_dirs(cgroup)
    leftovers = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout.split()
    assert not leftovers, leftovers  # containerd, its shims, the kubelet, the pod's processes
    shutil.rmtree(work, ignore_errors=True)
