"""Helpers for tests that run jobs on the test Kubernetes cluster (tests/cluster) with fake-gcs-server."""

import json
import os
import subprocess
import sys
import time

import cloudpickle

from luigi_kubeface import Settings
from support import REPO, TESTS



def kube_settings(cluster, namespace, fake_gcs, storage_root, **values):
    base = dict(backend="kubernetes", storage_root=storage_root, image=cluster.image, namespace=namespace,
                kubeconfig=cluster.kubeconfig, cpu_request="50m", memory_request="64Mi", memory_limit="2Gi",
                pod_env={"STORAGE_EMULATOR_HOST": fake_gcs.url, "GOOGLE_CLOUD_PROJECT": "test"},
                poll_interval=0.2, retry_backoff=0.5, unschedulable_patience=30)
    base.update(values)
    return Settings(**base)


def pods(cluster, namespace):
    data = cluster.core().list_namespaced_pod(namespace, _preload_content=False).data
    return json.loads(data)["items"]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def nap(seconds):
    time.sleep(seconds)
    return seconds


def chatty_nap(seconds):
    print("napping for %ss" % seconds, flush=True)
    time.sleep(seconds)
    return seconds


MASTER = """
import sys, cloudpickle
from luigi_kubeface import Client
settings, function, items, job_id = cloudpickle.loads(bytes.fromhex(sys.stdin.read()))
Client(settings).map(function, items, job_id=job_id)
print("MASTER DONE")
"""


def start_master(settings, items, job_id, function=nap):
    """A master in its own process, to interrupt or kill it."""
    # The master imports the test modules by name, as a user's master imports its pipeline.
    path = os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), TESTS, REPO])
    master = subprocess.Popen([sys.executable, "-c", MASTER], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(os.environ, PYTHONPATH=path))
    master.stdin.write(cloudpickle.dumps((settings, function, items, job_id)).hex())
    master.stdin.close()
    return master


def running_pods(cluster, namespace):
    return [p for p in pods(cluster, namespace) if p["status"].get("phase") == "Running"]
