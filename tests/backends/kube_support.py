"""Helpers for tests that run jobs on the test Kubernetes cluster (tests/infra/cluster) with fake-gcs-server."""

import json
import os
import subprocess
import sys
import threading
import time

import cloudpickle

from luigi_kubeface import Settings
from support import REPO, TESTS


def pod_settings(**values):
    """Kubernetes settings for building pods without a cluster (pure functions)."""
    return Settings(backend="kubernetes", storage_root="gs://b/jobs", image="r/kubeface:1", **values)


def kube_settings(cluster, namespace, fake_gcs, storage_root, **values):
    base = dict(
        backend="kubernetes",
        storage_root=storage_root,
        image=cluster.image,
        namespace=namespace,
        kubeconfig=cluster.master_kubeconfig,
        cpu_request="50m",
        memory_request="64Mi",
        memory_limit="2Gi",
        pod_env={"STORAGE_EMULATOR_HOST": fake_gcs.url, "GOOGLE_CLOUD_PROJECT": "test"},
        poll_interval=0.2,
        retry_backoff=0.5,
        unschedulable_patience=30,
    )
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


class MasterProcess(subprocess.Popen):
    """A master's process whose output pipe is closed once it is killed (every test's `finally` kills it)."""

    def kill(self):
        super().kill()
        self.wait()
        if self.stdout:
            self.stdout.close()


def start_master(settings, items, job_id, function=nap):
    """A master in its own process, to interrupt or kill it."""
    # The master imports the test modules by name, as a user's master imports its pipeline.
    path = os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), TESTS, REPO])
    master = MasterProcess(
        [sys.executable, "-c", MASTER],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=path),
    )
    master.stdin.write(cloudpickle.dumps((settings, function, items, job_id)).hex())
    master.stdin.close()
    return master


class PodCounter:
    """Samples the namespace's pods from the API server while a job runs: the cap, seen from outside."""

    def __init__(self, cluster, namespace):
        self.cluster, self.namespace, self.most, self._stop = cluster, namespace, 0, threading.Event()
        self.requests = 0  # its own LIST requests, to tell them from the master's
        self.most_active = 0  # pods not yet Succeeded or Failed: what a ResourceQuota on pods counts
        self.most_running = 0  # pods Running at once
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            now = pods(self.cluster, self.namespace)
            self.most = max(self.most, len(now))
            self.most_active = max(
                self.most_active, sum(p["status"].get("phase") not in ("Succeeded", "Failed") for p in now)
            )
            self.most_running = max(self.most_running, sum(p["status"].get("phase") == "Running" for p in now))
            self.requests += 1
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def running_pods(cluster, namespace):
    return [p for p in pods(cluster, namespace) if p["status"].get("phase") == "Running"]


class TcpProxy:
    """A TCP proxy to the API server (TLS passes through): adds latency to requests, or stalls connections.

    delay: seconds each chunk from the client waits before it is forwarded. stall(): the connections
    open now stay open and carry nothing from then on, as behind a NAT or load balancer that dropped
    them without a word; new connections work.
    """

    def __init__(self, target_url, delay=0.0):
        import socket
        import urllib.parse

        parsed = urllib.parse.urlparse(target_url)
        self.target = (parsed.hostname, parsed.port)
        self.delay = delay
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = "https://127.0.0.1:%d" % self._listener.getsockname()[1]
        self._connections, self._closed = [], False  # [client, upstream, {"dead": bool}]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            state = {"dead": False}
            self._connections.append((client, upstream, state))
            threading.Thread(target=self._pump, args=(client, upstream, True, state), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False, state), daemon=True).start()

    def _pump(self, source, sink, request, state):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if request and self.delay:
                    time.sleep(self.delay)
                if not state["dead"]:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            if not state["dead"] or self._closed:
                for sock in (source, sink):
                    try:
                        sock.close()
                    except OSError:
                        pass

    def stall(self):
        """Stall every connection open now; returns how many."""
        open_now = [c for c in self._connections if c[2]["dead"] is False]
        for _, _, state in open_now:
            state["dead"] = True
        return len(open_now)

    def kubeconfig(self, source, path):
        """A copy of the kubeconfig at source whose server is this proxy."""
        import yaml

        with open(source) as f:
            config = yaml.safe_load(f)
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = self.url
        with open(path, "w") as out:
            yaml.safe_dump(config, out)
        return str(path)

    def close(self):
        self._closed = True
        self._listener.close()
        for client, upstream, _ in self._connections:
            for sock in (client, upstream):
                try:
                    sock.close()
                except OSError:
                    pass


def log_or_nothing(store, key, attempt):
    """An attempt's log as its runner uploaded it, b"" if it uploaded none (killed before it could)."""
    from luigi_kubeface.errors import BlobNotFoundError

    try:
        return store.read_log(key, attempt)
    except BlobNotFoundError:
        return b""
