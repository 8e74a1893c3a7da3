"""Pytest fixtures for a real local Kubernetes cluster (control plane + node agent).

tests/conftest.py imports them, so every test can ask for them; the cluster starts
only when a test does.

``kube_cluster`` (session scope) builds the binaries if needed (``build.sh``,
minutes on the first run, then cached), starts the control plane and a node
agent, and yields a ``KubeCluster``. ``kube_namespace`` gives each test a fresh
namespace (with its ``default`` ServiceAccount ready) and deletes it afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .controlplane import ControlPlane, build_binaries
from .image import build_test_image
from .node_agent import NodeAgent, NodeSpec

REPO_ROOT = Path(__file__).resolve().parents[3]
TEST_IMAGE = "luigi-kubeface:test"


def pod_body(name, image, command, **spec):
    """A one-container Pod dict (restartPolicy Never); ``container=`` merges into the container."""
    container = {"name": "main", "image": image, "command": command}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [container], **spec}}


def container_state(pod):
    """The first container's state dict ({'running': ...} etc.), {} before any status."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return statuses[0]["state"] if statuses else {}


@dataclass
class KubeCluster:
    """Handle on the running cluster given to tests."""

    control_plane: ControlPlane
    agent: NodeAgent
    image_bin: str = ""  # the bin directory of the image's virtualenv (tests/infra/cluster/image.py)
    namespaces: list = field(default_factory=list)
    _client: object = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> str:
        """Path of the admin kubeconfig (pass to kubernetes.config.load_kube_config)."""
        return str(self.control_plane.kubeconfig)

    @property
    def url(self) -> str:
        return self.control_plane.url

    @property
    def image(self) -> str:
        """The image name the node agent runs with a bare virtualenv: luigi-kubeface from a wheel of
        the checkout and third-party packages, nothing of the repository (tests/infra/cluster/image.py)."""
        return TEST_IMAGE

    def new_api_client(self):
        """A new kubernetes.client.ApiClient for the admin user (close it when done)."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        return client.ApiClient(cfg)

    def api_client(self):
        """A shared admin ApiClient (thread-safe; do not close it)."""
        if self._client is None:
            self._client = self.new_api_client()
        return self._client

    def core(self):
        """CoreV1Api on the shared admin client."""
        from kubernetes import client

        return client.CoreV1Api(self.api_client())

    def create_namespace(self, prefix: str = "t", labels: dict | None = None, timeout: float = 30.0) -> str:
        """Create a namespace and wait for its 'default' ServiceAccount (pods need it)."""
        from kubernetes.client.rest import ApiException

        name = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
        core = self.core()
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": name, "labels": labels or {}}}, _preload_content=False)
        self.namespaces.append(name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                core.read_namespaced_service_account("default", name, _preload_content=False)
                break
            except ApiException as e:
                if e.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return name

    def delete_namespace(self, name: str, wait: bool = True, timeout: float = 60.0):
        """Delete a namespace; with ``wait``, until it is gone (needs the controller-manager)."""
        from kubernetes.client.rest import ApiException

        core = self.core()
        try:
            core.delete_namespace(name, _preload_content=False)
        except ApiException as e:
            if e.status != 404:
                raise
        if name in self.namespaces:
            self.namespaces.remove(name)
        deadline = time.monotonic() + timeout
        while wait:
            try:
                core.read_namespace(name, _preload_content=False)
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            if time.monotonic() > deadline:
                raise TimeoutError("namespace %s still exists after %ss" % (name, timeout))
            time.sleep(0.2)

    def wait_pod(self, namespace: str, name: str, predicate, timeout: float = 60.0) -> dict:
        """Poll the pod (as a JSON dict) until ``predicate(pod)`` is true; return it."""
        from kubernetes.client.rest import ApiException

        core = self.core()
        deadline = time.monotonic() + timeout
        pod = None
        while time.monotonic() < deadline:
            try:
                pod = json.loads(core.read_namespaced_pod(name, namespace, _preload_content=False).data)
                if predicate(pod):
                    return pod
            except ApiException as e:
                if e.status != 404:
                    raise
            time.sleep(0.2)
        raise TimeoutError("pod %s/%s: condition not met in %ss; last seen: %s" % (
            namespace, name, timeout, (pod or {}).get("status")))

    def wait_pod_gone(self, namespace: str, name: str, timeout: float = 60.0):
        """Wait until the pod object no longer exists."""
        from kubernetes.client.rest import ApiException

        core = self.core()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                core.read_namespaced_pod(name, namespace, _preload_content=False)
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            time.sleep(0.2)
        raise TimeoutError("pod %s/%s still exists after %ss" % (namespace, name, timeout))

    def wait_pod_phase(self, namespace: str, name: str, phases=("Succeeded", "Failed"), timeout: float = 60.0):
        if isinstance(phases, str):
            phases = (phases,)
        return self.wait_pod(namespace, name, lambda p: p.get("status", {}).get("phase") in phases, timeout)


def start_cluster(workdir, images: dict | None = None, nodes=None, **agent_kwargs) -> KubeCluster:
    """Start a control plane and a node agent under ``workdir`` (for custom setups)."""
    workdir = Path(workdir)
    image_bin = build_test_image(workdir / "image") if images is None else ""
    cp = ControlPlane(workdir / "controlplane", build_binaries())
    cp.start()
    try:
        agent = NodeAgent(
            cp.kubeconfig,
            images=images or {TEST_IMAGE: image_bin},
            workdir=workdir / "agent",
            nodes=nodes or [NodeSpec("node-1", cpu="8", memory="16Gi", pods=110)],
            **agent_kwargs,
        )
        agent.start()
    except BaseException:
        cp.stop()
        raise
    return KubeCluster(cp, agent, image_bin)


def stop_cluster(cluster: KubeCluster):
    if cluster._client is not None:
        cluster._client.close()
        cluster._client = None
    try:
        cluster.agent.stop(delete_nodes=False)
    finally:
        cluster.control_plane.stop()


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory):
    """A real kube-apiserver/scheduler/controller-manager/etcd plus the fake kubelet, once per session."""
    cluster = start_cluster(tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture
def kube_namespace(kube_cluster):
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    ns = kube_cluster.create_namespace("t")
    yield ns
    kube_cluster.delete_namespace(ns, wait=False)
