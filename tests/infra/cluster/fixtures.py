"""Pytest fixtures for a real local Kubernetes cluster.

tests/conftest.py imports them, so every test can ask for them; a cluster starts
only when a test does.

``kube_cluster`` (session scope): the control plane and a real node (kubelet,
containerd, runc: real_node.py) running the image images/Dockerfile builds
(node_image.py). Binaries and images are built on a machine's first run, then
cached under ~/.cache/luigi-kubeface. Every Kubernetes test uses it.

``stand_in_cluster`` (session scope): a control plane of its own with the stand-in
kubelet (node_agent.py), only for what a real node cannot do cheaply here:
several nodes, a node partition, stopped heartbeats. Each test using it says why.

``kube_namespace`` / ``stand_in_namespace`` give a test a fresh namespace (with its
``default`` ServiceAccount ready) and delete it afterwards. ``pod_network`` is the
bridge whose gateway address the real node's pods reach (and nothing else).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from .controlplane import ControlPlane, build_binaries
from .image import build_test_image
from .node_agent import NodeAgent, NodeSpec
from .node_image import build_images
from .pod_network import PodNetwork
from .real_node import RealNode

REPO_ROOT = Path(__file__).resolve().parents[3]
TEST_IMAGE = "luigi-kubeface:test"


def pod_body(name, image, command, **spec):
    """A one-container Pod dict (restartPolicy Never); ``container=`` merges into the container."""
    container = {"name": "main", "image": image, "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def container_state(pod):
    """The first container's state dict ({'running': ...} etc.), {} before any status."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return statuses[0]["state"] if statuses else {}


@dataclass
class KubeCluster:
    """Handle on the running cluster given to tests."""

    control_plane: ControlPlane
    node: object  # a RealNode, or the stand-in's NodeAgent
    image_bin: str = ""  # the stand-in's image: the bin directory of a virtualenv (tests/infra/cluster/image.py)
    namespaces: list = field(default_factory=list)
    _client: object = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> str:
        """Path of the admin kubeconfig (pass to kubernetes.config.load_kube_config)."""
        return str(self.control_plane.kubeconfig)

    @property
    def master_kubeconfig(self) -> str:
        """The kubeconfig luigi-kubeface's master uses in tests: its requests are counted apart (requests_of)."""
        return str(self.control_plane.master_kubeconfig)

    @property
    def url(self) -> str:
        return self.control_plane.url

    @property
    def real(self) -> bool:
        return isinstance(self.node, RealNode)

    @property
    def agent(self):
        """The stand-in kubelet (stand_in_cluster only)."""
        assert not self.real, "a real node has no stand-in agent: use kube_cluster.node"
        return self.node

    @property
    def image(self) -> str:
        """The image pods run: images/Dockerfile's build with the test extras and a wheel of the checkout on a
        real node; on the stand-in, a bare virtualenv as that image holds it. Never the repository."""
        return TEST_IMAGE

    def evict_pod(self, namespace: str, name: str):
        """Evict a pod: through the Eviction API on a real node (its kubelet then stops it gracefully), as
        the kubelet's own eviction (phase Failed, reason Evicted) on the stand-in."""
        if not self.real:
            return self.node.evict_pod(namespace, name)
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        self.core().create_namespaced_pod_eviction(name, namespace, body, _preload_content=False)

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
        core.create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}},
            _preload_content=False,
        )
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
        raise TimeoutError(
            "pod %s/%s: condition not met in %ss; last seen: %s" % (namespace, name, timeout, (pod or {}).get("status"))
        )

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
    """A control plane and the stand-in node agent under ``workdir`` (for custom setups)."""
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


# Images beside the test image, for tests that need them (built over it, cached like it).
ROOT_IMAGE = "docker.io/library/luigi-kubeface:root"
EXTRA_IMAGES = ((ROOT_IMAGE, "FROM {base}\nUSER root\n"),)


def start_real_cluster(workdir, network) -> KubeCluster:
    """A control plane and a real node under ``workdir``, pods on ``network``."""
    workdir = Path(workdir)
    images = build_images(workdir / "images", EXTRA_IMAGES)
    cp = ControlPlane(workdir / "controlplane", build_binaries(), kubelet_tls=True)
    cp.start()
    try:
        node = RealNode(cp, workdir / "node", network, images).start()
    except BaseException:
        cp.stop()
        raise
    return KubeCluster(cp, node)


def stop_cluster(cluster: KubeCluster):
    if cluster._client is not None:
        cluster._client.close()
        cluster._client = None
    try:
        if cluster.real:
            cluster.node.stop()
        else:
            cluster.node.stop(delete_nodes=False)
    finally:
        cluster.control_plane.stop()


@pytest.fixture(scope="session")
def pod_network():
    """The real node's bridge (made once per session, removed at its end, even after a crash); without root,
    a stand-in on loopback so that tests which need no real node still run."""
    if os.geteuid() != 0:
        yield SimpleNamespace(gateway="127.0.0.1", bridge=None)
        return
    network = PodNetwork.allocate()
    try:
        yield network
    finally:
        network.down()


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory, pod_network):
    """A real kube-apiserver/scheduler/controller-manager/etcd plus a real node, once per session."""
    cluster = start_real_cluster(tmp_path_factory.mktemp("kube"), pod_network)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="session")
def stand_in_cluster(tmp_path_factory):
    """A control plane with the stand-in kubelet: several nodes, partitions and stopped heartbeats."""
    cluster = start_cluster(tmp_path_factory.mktemp("kube-stand-in"))
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


@pytest.fixture
def stand_in_namespace(stand_in_cluster):
    ns = stand_in_cluster.create_namespace("t")
    yield ns
    stand_in_cluster.delete_namespace(ns, wait=False)
