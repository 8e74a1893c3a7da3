"""A fake kubelet for tests: registers Nodes and runs bound pods as local processes.

Why: there is no container runtime here, but luigi-kubeface must be tested
against a real API server. The agent does what a kubelet does as seen through
the API: Node registration and Lease heartbeats, pod status (phases, container
states, exit codes, reasons), graceful deletion, and ``/containerLogs`` for
``read_namespaced_pod_log``. Only the first container of a pod is run.

The container ``image`` selects a local environment: ``images`` maps an image
name to a directory prepended to PATH (e.g. a virtualenv's ``bin``). Unknown
images report ``ErrImagePull`` / ``ImagePullBackOff``, like a real kubelet.

Usage::

    agent = NodeAgent(kubeconfig, images={"luigi-kubeface:test": sys_bin}, workdir=tmp)
    agent.start()             # registers nodes, waits until they are schedulable
    agent.kill_pod_process("ns", "pod")   # fault injection, see the methods below
    agent.stop()
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import urllib3
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from .controlplane import Reaper, self_signed_cert

log = logging.getLogger("luigi_kubeface.tests.node_agent")

DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|K|M|G|T|P|E)?$")
_SUFFIX = {
    None: 1,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_quantity(q) -> float:
    """Kubernetes resource quantity ('512Mi', '0.5', '100m') -> number."""
    m = _QUANTITY_RE.match(str(q).strip())
    if not m:
        raise ValueError("bad quantity %r" % q)
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """MicroTime, as Lease.spec.renewTime wants it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> float:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def expand_vars(s: str, env: dict) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values ($$ escapes)."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        s,
    )


@dataclass
class NodeSpec:
    """A Node the agent registers; capacity is what the scheduler sees."""

    name: str = "node-1"
    cpu: str = "8"
    memory: str = "16Gi"
    pods: int = 110
    labels: dict = field(default_factory=dict)
    # runtime state (fault injection)
    heartbeat: bool = True
    forced_not_ready: bool = False
    frozen: bool = False


class PodWork:
    """The agent's state for one pod (by uid), shared by its worker thread and the watcher."""

    def __init__(self, pod: dict, logdir: Path):
        meta = pod["metadata"]
        self.uid = meta["uid"]
        self.namespace = meta["namespace"]
        self.name = meta["name"]
        self.pod = pod
        self.node = pod["spec"]["nodeName"]
        self.container = pod["spec"]["containers"][0]
        self.logdir = logdir
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.restart_count = 0
        self.start_time: float | None = None
        self.running = threading.Event()  # a process is alive
        self.done = threading.Event()  # the worker thread finished
        self.final = False  # a terminal status was reported
        # why the process was killed: "oom", "deadline", "evicted", "delete", "abort", "killed"
        self.kill_reason: str | None = None
        self.evict_message = ""
        self.deleting = False
        self.grace = 30.0
        self.aborted = False  # the pod object is gone: no more API writes

    def log_path(self, restart: int) -> Path:
        return self.logdir / ("%d.log" % restart)

    def kill(self, reason: str, sig=signal.SIGKILL):
        """Record why, then signal the process group (the container's session)."""
        with self.lock:
            if self.kill_reason is None or reason in ("delete", "abort"):
                self.kill_reason = self.kill_reason or reason
            proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        self.wake.set()


class NodeAgent:
    """Plays the kubelet for one or more Nodes; see the module docstring.

    ``images``: image name -> bin dir prepended to PATH (or None: the agent's own
    ``sys.executable`` directory). ``extra_env`` is added to every process's
    environment (e.g. STORAGE_EMULATOR_HOST), under the pod's own env.
    """

    def __init__(
        self,
        kubeconfig,
        images: dict,
        workdir,
        nodes=None,
        *,
        extra_env: dict | None = None,
        heartbeat_interval: float = 2.0,
        lease_duration: int = 40,
        monitor_interval: float = 0.2,
        image_pull_backoff: float = 2.0,
        restart_backoff: float = 1.0,
        max_grace: float = 10.0,
        kubelet_version: str = "v1.37.2",
    ):
        self.kubeconfig = str(kubeconfig)
        self.images = {k: (v if v is not None else os.path.dirname(sys.executable)) for k, v in images.items()}
        self.workdir = Path(workdir).resolve()
        specs = nodes or [NodeSpec()]
        self.nodes: dict[str, NodeSpec] = {}
        for n in specs:
            n = NodeSpec(name=n) if isinstance(n, str) else n
            self.nodes[n.name] = n
        self.extra_env = dict(extra_env or {})
        self.heartbeat_interval = heartbeat_interval
        self.lease_duration = lease_duration
        self.monitor_interval = monitor_interval
        self.image_pull_backoff = image_pull_backoff
        self.restart_backoff = restart_backoff
        self.max_grace = max_grace
        self.kubelet_version = kubelet_version
        self.work: dict[str, PodWork] = {}  # uid -> work
        self.by_name: dict[tuple, PodWork] = {}  # (ns, name) -> latest work, for logs
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch: k8s_watch.Watch | None = None
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port: int | None = None
        self.api_client = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0):
        """Serve logs, register nodes, start heartbeats, pod watch and monitor threads."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        cfg.connection_pool_maxsize = 64
        self.api_client = k8s_client.ApiClient(cfg)
        self.core = k8s_client.CoreV1Api(self.api_client)
        self.coord = k8s_client.CoordinationV1Api(self.api_client)
        self._start_log_server()
        for spec in self.nodes.values():
            self._register_node(spec)
        for target, name in (
            (self._heartbeat_loop, "heartbeat"),
            (self._watch_loop, "pod-watch"),
            (self._monitor_loop, "monitor"),
        ):
            t = threading.Thread(target=target, name="node-agent-" + name, daemon=True)
            t.start()
            self._threads.append(t)
        self.wait_nodes_schedulable(timeout)
        return self

    def stop(self, delete_nodes: bool = True):
        """Kill every pod process, stop threads and the log server; optionally delete Nodes."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        with self._lock:
            works = list(self.work.values())
        for w in works:
            w.aborted = True
            w.kill("abort")
        for w in works:
            w.done.wait(5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if delete_nodes and self.api_client is not None:
            for name in self.nodes:
                try:
                    self.core.delete_node(name, _preload_content=False)
                except Exception:  # the control plane may already be gone
                    pass
        for t in self._threads:
            t.join(5)
        self._threads.clear()
        if self.api_client is not None:
            self.api_client.close()
            self.api_client = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ fault injection
    def find(self, namespace: str, name: str) -> PodWork:
        with self._lock:
            w = self.by_name.get((namespace, name))
        if w is None:
            raise KeyError("no pod %s/%s on this agent" % (namespace, name))
        return w

    def pod_pid(self, namespace: str, name: str, timeout: float = 30.0) -> int:
        """PID of the pod's running process (waits until it runs)."""
        w = self.find(namespace, name)
        if not w.running.wait(timeout):
            raise TimeoutError("pod %s/%s is not running" % (namespace, name))
        return w.proc.pid

    def kill_pod_process(self, namespace: str, name: str, sig=signal.SIGKILL):
        """Kill the container process as if it crashed: exit code 128+sig, reason Error."""
        self.find(namespace, name).kill("killed", sig)

    def evict_pod(self, namespace: str, name: str, message: str = "The node was low on resource: memory."):
        """Kubelet eviction: kill, then phase Failed with reason Evicted."""
        w = self.find(namespace, name)
        w.evict_message = message
        w.kill("evicted")

    def set_node_ready(self, node: str, ready: bool):
        """Report the Node's Ready condition False (kubelet alive but unhealthy) or back True."""
        spec = self.nodes[node]
        spec.forced_not_ready = not ready
        self._patch_node_status(spec)

    def stop_heartbeats(self, node: str, freeze_pods: bool = False):
        """Stop Lease renewals: the node lifecycle controller marks it Unknown after the grace
        period. ``freeze_pods`` also stops pod status writes and deletions on that node,
        like a network partition (processes keep running)."""
        spec = self.nodes[node]
        spec.heartbeat = False
        spec.frozen = freeze_pods

    def resume_heartbeats(self, node: str):
        spec = self.nodes[node]
        was_frozen = spec.frozen
        spec.heartbeat, spec.frozen = True, False
        self._renew_lease(spec)
        self._patch_node_status(spec)
        if was_frozen and self._watch is not None:
            self._watch.stop()  # relist: catch up on pod changes missed while partitioned

    def wait_nodes_schedulable(self, timeout: float = 60.0):
        """Wait until every node is Ready and free of not-ready/unreachable taints."""
        deadline = time.monotonic() + timeout
        pending = set(self.nodes)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                node = self._get_json(self.core.read_node, name)
                taints = [t["key"] for t in node["spec"].get("taints") or []]
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in node.get("status", {}).get("conditions") or []
                )
                if ready and not any(k.startswith("node.kubernetes.io/") for k in taints):
                    pending.discard(name)
            if pending:
                time.sleep(0.3)
        if pending:
            raise TimeoutError("nodes not schedulable: %s" % sorted(pending))

    # ------------------------------------------------------------------ nodes and leases
    @staticmethod
    def _get_json(fn, *args, **kwargs) -> dict:
        resp = fn(*args, _preload_content=False, **kwargs)
        return json.loads(resp.data)

    def _node_status(self, spec: NodeSpec) -> dict:
        now = now_rfc3339()
        ready = not spec.forced_not_ready

        def cond(type_, status, reason, message):
            return {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }

        res = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.pods), "ephemeral-storage": "100Gi"}
        return {
            "capacity": res,
            "allocatable": res,
            "conditions": [
                cond(
                    "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
                ),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond(
                    "Ready",
                    "True" if ready else "False",
                    "KubeletReady" if ready else "KubeletNotReady",
                    "kubelet is posting ready status" if ready else "injected fault: node not ready",
                ),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": spec.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, spec.name).hex,
                "systemUUID": str(uuid.uuid4()),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": os.uname().release,
                "osImage": "luigi-kubeface node agent",
                "containerRuntimeVersion": "local://0.1",
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _patch_node_status(self, spec: NodeSpec):
        # Keep lastTransitionTime of unchanged conditions: other controllers read it.
        status = self._node_status(spec)
        try:
            current = self._get_json(self.core.read_node_status, spec.name)
            old = {c["type"]: c for c in current.get("status", {}).get("conditions") or []}
            for c in status["conditions"]:
                o = old.get(c["type"])
                if o and o.get("status") == c["status"] and o.get("lastTransitionTime"):
                    c["lastTransitionTime"] = o["lastTransitionTime"]
        except ApiException:
            pass
        self.core.patch_node_status(
            spec.name, {"status": status}, _content_type="application/merge-patch+json", _preload_content=False
        )

    def _register_node(self, spec: NodeSpec):
        labels = {
            "kubernetes.io/hostname": spec.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "luigi-kubeface-node-agent",
            **spec.labels,
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": spec.name, "labels": labels},
            "status": self._node_status(spec),
        }
        try:
            self.core.create_node(body, _preload_content=False)
        except ApiException as e:
            if e.status != 409:
                raise
            self.core.patch_node(spec.name, {"metadata": {"labels": labels}}, _preload_content=False)
        self._patch_node_status(spec)
        self._renew_lease(spec)

    def _renew_lease(self, spec: NodeSpec):
        node = self._get_json(self.core.read_node, spec.name)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": spec.name,
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": spec.name, "uid": node["metadata"]["uid"]}
                ],
            },
            "spec": {
                "holderIdentity": spec.name,
                "leaseDurationSeconds": self.lease_duration,
                "renewTime": now_micro(),
            },
        }
        try:
            self.coord.patch_namespaced_lease(
                spec.name,
                "kube-node-lease",
                {"spec": body["spec"]},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body, _preload_content=False)

    def _heartbeat_loop(self):
        """Renew Leases; every ~10 s also re-assert the Ready condition (the node lifecycle
        controller sets it Unknown while heartbeats are stopped)."""
        tick = 0
        while not self._stop.wait(self.heartbeat_interval):
            tick += 1
            for spec in self.nodes.values():
                if not spec.heartbeat:
                    continue
                try:
                    self._renew_lease(spec)
                    if tick % max(1, int(10 / self.heartbeat_interval)) == 0:
                        node = self._get_json(self.core.read_node_status, spec.name)
                        want = "False" if spec.forced_not_ready else "True"
                        cur = [c for c in node.get("status", {}).get("conditions") or [] if c["type"] == "Ready"]
                        if not cur or cur[0]["status"] != want:
                            self._patch_node_status(spec)
                except Exception as e:  # API outage: keep trying, like a kubelet
                    if not self._stop.is_set():
                        log.warning("heartbeat for %s failed: %s", spec.name, e)

    # ------------------------------------------------------------------ pod watch
    def _watch_loop(self):
        """List+watch all pods; dispatch those bound to our nodes. Relist on errors/410."""
        while not self._stop.is_set():
            try:
                lst = self._get_json(self.core.list_pod_for_all_namespaces)
                for pod in lst["items"]:
                    self._on_pod("ADDED", pod)
                rv = lst["metadata"]["resourceVersion"]
                self._watch = k8s_watch.Watch()
                for ev in self._watch.stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                    _request_timeout=(10, 120),
                ):
                    if self._stop.is_set():
                        break
                    if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._on_pod(ev["type"], ev["object"])
                    elif ev["type"] == "ERROR":
                        break
            except Exception as e:
                if self._stop.is_set():
                    break
                log.debug("pod watch restarting after %r", e)
                self._stop.wait(0.5)

    def _on_pod(self, etype: str, pod: dict):
        node = pod.get("spec", {}).get("nodeName")
        if node not in self.nodes:
            return
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            w = self.work.get(uid)
        if etype == "DELETED":
            if w is not None:
                w.aborted = True
                w.kill("abort")
                with self._lock:
                    self.work.pop(uid, None)
                    if self.by_name.get((w.namespace, w.name)) is w:
                        del self.by_name[(w.namespace, w.name)]
            return
        if self.nodes[node].frozen:
            return
        phase = pod.get("status", {}).get("phase")
        if w is None:
            if meta.get("deletionTimestamp"):
                self._force_delete(meta["namespace"], meta["name"], uid)
                return
            if phase in ("Succeeded", "Failed"):
                return
            w = PodWork(pod, self.workdir / "pods" / ("%s_%s_%s" % (meta["namespace"], meta["name"], uid)))
            with self._lock:
                if uid in self.work:
                    return
                self.work[uid] = w
                self.by_name[(w.namespace, w.name)] = w
            t = threading.Thread(
                target=self._run_pod_safe,
                args=(w, phase == "Running"),
                name="pod-%s-%s" % (w.namespace, w.name),
                daemon=True,
            )
            t.start()
            return
        w.pod = pod
        if meta.get("deletionTimestamp") and not w.deleting:
            w.deleting = True
            w.grace = min(float(meta.get("deletionGracePeriodSeconds") or 0), self.max_grace)
            w.kill("delete", signal.SIGTERM)
            if w.grace > 0:
                timer = threading.Timer(w.grace, lambda: w.kill("delete", signal.SIGKILL))
                timer.daemon = True
                timer.start()
            else:
                w.kill("delete", signal.SIGKILL)
            if w.done.is_set():  # the worker already finished: nobody else will delete it
                self._force_delete(w.namespace, w.name, w.uid)

    def _force_delete(self, namespace: str, name: str, uid: str):
        """What a kubelet does once containers are gone: delete with grace period 0."""
        try:
            self.core.delete_namespaced_pod(
                name,
                namespace,
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                grace_period_seconds=0,
                _preload_content=False,
            )
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("delete %s/%s failed: %s", namespace, name, e)

    # ------------------------------------------------------------------ pod status
    def _write_status(self, w: PodWork, build) -> bool:
        """Read-modify-write of pod status with resourceVersion preconditions, retried on
        conflicts. ``build(current_status) -> new_status_fields``. False if the pod is gone."""
        tries = 0
        while tries < 20:  # conflicts and API errors; an unreachable API server is waited out, as a kubelet does
            if w.aborted or self._stop.is_set() or self.nodes[w.node].frozen:
                return False
            try:
                cur = self._get_json(self.core.read_namespaced_pod_status, w.name, w.namespace)
            except ApiException as e:
                if e.status == 404:
                    return False
                tries += 1
                time.sleep(0.5)
                continue
            except (urllib3.exceptions.HTTPError, OSError):
                time.sleep(1)
                continue
            if cur["metadata"]["uid"] != w.uid:
                return False
            status = cur.get("status", {})
            if status.get("phase") in ("Succeeded", "Failed"):
                return False  # terminal phases are final
            new = build(status)
            old_conds = {c["type"]: c for c in status.get("conditions") or []}
            conds = dict(old_conds)
            for c in new.pop("conditions", []):
                o = old_conds.get(c["type"])
                if o and o.get("status") == c["status"]:
                    c["lastTransitionTime"] = o.get("lastTransitionTime") or c["lastTransitionTime"]
                conds[c["type"]] = c
            new["conditions"] = list(conds.values())
            body = {"metadata": {"uid": w.uid, "resourceVersion": cur["metadata"]["resourceVersion"]}, "status": new}
            try:
                self.core.patch_namespaced_pod_status(
                    w.name, w.namespace, body, _content_type="application/merge-patch+json", _preload_content=False
                )
                return True
            except ApiException as e:
                if e.status == 404:
                    return False
                tries += 1
                if e.status != 409:
                    log.warning("status update of %s/%s failed: %s %s", w.namespace, w.name, e.status, e.body)
                    time.sleep(0.5)
            except (urllib3.exceptions.HTTPError, OSError):
                time.sleep(1)
        return False

    @staticmethod
    def _cond(type_, status, reason=None, message=None):
        c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        return c

    def _base_status(self, w: PodWork) -> dict:
        return {
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": datetime.datetime.fromtimestamp(w.start_time, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }

    def _container_status(self, w: PodWork, state: dict, last_state=None, ready=False) -> dict:
        c = w.container
        cs = {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": ready,
            "started": "running" in state,
            "restartCount": w.restart_count,
            "state": state,
            "lastState": last_state or {},
        }
        if "waiting" not in state:
            cs["imageID"] = "local://" + c["image"]
        if w.proc is not None and "waiting" not in state:
            cs["containerID"] = "local://%d" % w.proc.pid
        return cs

    def _report_waiting(self, w, reason, message, last_state=None):
        def build(status):
            st = self._base_status(w)
            st.update(
                phase=status.get("phase") if status.get("phase") == "Running" else "Pending",
                containerStatuses=[
                    self._container_status(w, {"waiting": {"reason": reason, "message": message}}, last_state)
                ],
                conditions=[
                    self._cond("PodReadyToStartContainers", "True"),
                    self._cond("Initialized", "True"),
                    self._cond(
                        "Ready",
                        "False",
                        "ContainersNotReady",
                        "containers with unready status: [%s]" % w.container["name"],
                    ),
                    self._cond(
                        "ContainersReady",
                        "False",
                        "ContainersNotReady",
                        "containers with unready status: [%s]" % w.container["name"],
                    ),
                ],
            )
            return st

        return self._write_status(w, build)

    def _report_running(self, w, started_at, last_state=None):
        def build(status):
            st = self._base_status(w)
            st.update(
                phase="Running",
                containerStatuses=[
                    self._container_status(w, {"running": {"startedAt": started_at}}, last_state, ready=True)
                ],
                conditions=[
                    self._cond("PodReadyToStartContainers", "True"),
                    self._cond("Initialized", "True"),
                    self._cond("Ready", "True"),
                    self._cond("ContainersReady", "True"),
                ],
            )
            return st

        return self._write_status(w, build)

    def _report_terminal(self, w, phase, terminated, reason=None, message=None, extra_conds=()):
        def build(status):
            st = self._base_status(w)
            st.update(
                phase=phase,
                containerStatuses=[self._container_status(w, {"terminated": terminated})],
                conditions=[
                    self._cond("PodReadyToStartContainers", "False"),
                    self._cond("Initialized", "True"),
                    self._cond("Ready", "False", "PodCompleted" if phase == "Succeeded" else "PodFailed"),
                    self._cond("ContainersReady", "False", "PodCompleted" if phase == "Succeeded" else "PodFailed"),
                    *extra_conds,
                ],
            )
            if reason:
                st["reason"] = reason
            if message:
                st["message"] = message
            return st

        ok = self._write_status(w, build)
        w.final = True
        return ok

    # ------------------------------------------------------------------ running pods
    def _run_pod_safe(self, w: PodWork, was_running: bool):
        try:
            self._run_pod(w, was_running)
        except Exception:
            log.exception("pod worker %s/%s crashed", w.namespace, w.name)
        finally:
            w.running.clear()
            w.done.set()
            if w.deleting and not w.aborted and not self.nodes[w.node].frozen:
                self._force_delete(w.namespace, w.name, w.uid)

    def _deadline_left(self, w: PodWork):
        ads = w.pod["spec"].get("activeDeadlineSeconds")
        if ads is None or w.start_time is None:
            return None
        return w.start_time + float(ads) - time.time()

    def _fail_deadline(self, w: PodWork, terminated=None):
        term = terminated or {
            "exitCode": 137,
            "reason": "Error",
            "startedAt": now_rfc3339(),
            "finishedAt": now_rfc3339(),
        }
        self._report_terminal(w, "Failed", term, "DeadlineExceeded", DEADLINE_MESSAGE)

    def _run_pod(self, w: PodWork, was_running: bool):
        st = w.pod.get("status", {})
        w.start_time = parse_time(st["startTime"]) if st.get("startTime") else time.time()
        if was_running:
            # A previous agent ran it: its process is gone, as after a kubelet restart lost the runtime.
            self._report_terminal(
                w,
                "Failed",
                {
                    "exitCode": 137,
                    "reason": "ContainerStatusUnknown",
                    "startedAt": now_rfc3339(),
                    "finishedAt": now_rfc3339(),
                    "message": "The container could not be located when the pod was terminated",
                },
            )
            return
        image = w.container.get("image", "")
        bindir = self.images.get(image)
        if bindir is None:
            self._image_pull_loop(w, image)
            return
        env = None
        while env is None:
            if w.deleting or w.aborted:
                return
            left = self._deadline_left(w)
            if left is not None and left <= 0:
                return self._fail_deadline(w)
            try:
                env = self._build_env(w, bindir)
            except LookupError as e:  # missing Secret/ConfigMap: the kubelet retries
                self._report_waiting(w, "CreateContainerConfigError", str(e))
                w.wake.wait(2)
                w.wake.clear()
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:  # API server away: retry, as a kubelet
                log.info("pod %s/%s waits for the API server to read its env: %s", w.namespace, w.name, e)
                w.wake.wait(1)
                w.wake.clear()
        self._container_loop(w, env)

    def _image_pull_loop(self, w: PodWork, image: str):
        msg = 'Failed to pull image "%s": image is not known to the luigi-kubeface node agent (known: %s)' % (
            image,
            ", ".join(sorted(self.images)),
        )
        reason = "ErrImagePull"
        while not (w.deleting or w.aborted or self._stop.is_set()):
            left = self._deadline_left(w)
            if left is not None and left <= 0:
                return self._fail_deadline(w)
            self._report_waiting(w, reason, msg if reason == "ErrImagePull" else 'Back-off pulling image "%s"' % image)
            reason = "ImagePullBackOff" if reason == "ErrImagePull" else "ErrImagePull"
            w.wake.wait(self.image_pull_backoff if left is None else min(left, self.image_pull_backoff))
            w.wake.clear()

    def _lookup(self, w: PodWork, kind: str, name: str, optional: bool) -> dict:
        fn = self.core.read_namespaced_secret if kind == "secret" else self.core.read_namespaced_config_map
        try:
            obj = self._get_json(fn, name, w.namespace)
        except ApiException as e:
            if e.status == 404:
                if optional:
                    return {}
                raise LookupError('%s "%s" not found' % (kind, name)) from None
            raise
        if kind == "secret":
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    def _build_env(self, w: PodWork, bindir: str) -> dict:
        """The process environment: a clean container-like base, agent extras, then pod env."""
        c, meta = w.container, w.pod["metadata"]
        env = {
            "PATH": os.pathsep.join(
                [str(bindir), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            ),
            "HOME": str(w.logdir / "home"),
            "HOSTNAME": meta["name"],
            "LANG": "C.UTF-8",
        }
        env.update(self.extra_env)
        for src in c.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for kind, key in (("secret", "secretRef"), ("configmap", "configMapRef")):
                if key in src:
                    data = self._lookup(w, kind, src[key]["name"], src[key].get("optional", False))
                    env.update({prefix + k: v for k, v in data.items()})
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": w.node,
            "spec.serviceAccountName": w.pod["spec"].get("serviceAccountName", ""),
            "status.hostIP": "127.0.0.1",
            "status.podIP": "127.0.0.1",
        }
        for e in c.get("env") or []:
            name, vf = e["name"], e.get("valueFrom")
            if vf is None:
                env[name] = expand_vars(e.get("value", ""), env)
            elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
                kind, ref = (
                    ("secret", vf["secretKeyRef"]) if "secretKeyRef" in vf else ("configmap", vf["configMapKeyRef"])
                )
                data = self._lookup(w, kind, ref["name"], ref.get("optional", False))
                if ref["key"] in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional", False):
                    raise LookupError('couldn\'t find key %s in %s "%s"' % (ref["key"], kind, ref["name"]))
            elif "fieldRef" in vf:
                path = vf["fieldRef"]["fieldPath"]
                m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
                env[name] = meta.get(m.group(1), {}).get(m.group(2), "") if m else fields.get(path, "")
            elif "resourceFieldRef" in vf:
                res = vf["resourceFieldRef"]["resource"]  # e.g. limits.memory
                kind, _, rname = res.partition(".")
                q = (c.get("resources") or {}).get(kind, {}).get(rname)
                env[name] = str(int(parse_quantity(q))) if q else "0"
        return env

    def _memory_limit(self, w: PodWork):
        q = ((w.container.get("resources") or {}).get("limits") or {}).get("memory")
        return parse_quantity(q) if q else None

    def _container_loop(self, w: PodWork, env: dict):
        c = w.container
        argv = [expand_vars(a, env) for a in (c.get("command") or []) + (c.get("args") or [])]
        if not c.get("command"):
            self._report_waiting(
                w, "CreateContainerError", "the node agent needs an explicit command (images have no entrypoint here)"
            )
            while not (w.deleting or w.aborted or self._stop.is_set()):
                w.wake.wait(1)
            return
        policy = w.pod["spec"].get("restartPolicy", "Always")
        cwd = c.get("workingDir") or str(w.logdir / "home")
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        Path(cwd).mkdir(parents=True, exist_ok=True)
        # A container's /tmp is its own and goes with it: not the machine's /tmp, where a killed pod's
        # files would pile up.
        env = dict(env, TMPDIR=env.get("TMPDIR") or str(w.logdir / "tmp"))
        Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        last_state = None
        backoff = self.restart_backoff
        while True:
            if w.deleting or w.aborted or self._stop.is_set():
                return
            started = now_rfc3339()
            logf = w.log_path(w.restart_count)
            try:
                with w.lock:
                    w.proc = subprocess.Popen(
                        argv,
                        env=env,
                        cwd=cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    w.kill_reason = None
            except OSError as e:
                w.proc = None
                self._report_terminal(
                    w,
                    "Failed",
                    {
                        "exitCode": 128,
                        "reason": "StartError",
                        "message": str(e),
                        "startedAt": started,
                        "finishedAt": now_rfc3339(),
                    },
                )
                return
            Reaper.watch(w.proc.pid)
            pump = threading.Thread(target=self._pump_log, args=(w.proc.stdout, logf), daemon=True)
            pump.start()
            w.running.set()
            self._report_running(w, started, last_state)
            code = w.proc.wait()
            try:  # stray children of the container die with it, as in a real pod
                os.killpg(w.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            Reaper.forget(w.proc.pid)
            pump.join(5)
            w.running.clear()
            finished = now_rfc3339()
            why = w.kill_reason
            code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, like a runtime
            term = {
                "exitCode": code,
                "startedAt": started,
                "finishedAt": finished,
                "containerID": "local://%d" % w.proc.pid,
                "reason": "OOMKilled" if why == "oom" else ("Completed" if code == 0 else "Error"),
            }
            if why in ("abort", "delete"):
                return  # the pod is going away; _run_pod_safe deletes it
            if why == "deadline":
                return self._fail_deadline(w, term)
            if why == "evicted":
                return self._report_terminal(
                    w,
                    "Failed",
                    term,
                    "Evicted",
                    w.evict_message,
                    extra_conds=[self._cond("DisruptionTarget", "True", "TerminationByKubelet", w.evict_message)],
                )
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if not restart:
                return self._report_terminal(w, "Succeeded" if code == 0 else "Failed", term)
            last_state = {"terminated": term}
            w.restart_count += 1
            self._report_waiting(
                w,
                "CrashLoopBackOff",
                "back-off %ss restarting failed container=%s pod=%s" % (backoff, c["name"], w.name),
                last_state,
            )
            w.wake.clear()
            w.wake.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    @staticmethod
    def _pump_log(pipe, path: Path):
        """Copy process output to a CRI-style log file: '<time> stdout F|P <line>'."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with pipe, open(path, "ab") as f:
            for line in iter(pipe.readline, b""):
                ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
                tag = b"F" if line.endswith(b"\n") else b"P"
                f.write(ts + b" stdout " + tag + b" " + line.rstrip(b"\n") + b"\n")
                f.flush()

    # ------------------------------------------------------------------ monitor (OOM, deadlines)
    @staticmethod
    def _rss_by_session() -> dict:
        """RSS bytes summed per session id over /proc (a container = a session)."""
        out: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d, "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            sid, rss = int(fields[3]), int(fields[21]) * PAGE_SIZE
            out[sid] = out.get(sid, 0) + rss
        return out

    def _monitor_loop(self):
        while not self._stop.wait(self.monitor_interval):
            with self._lock:
                works = [w for w in self.work.values() if not w.final and not w.done.is_set()]
            limited = [(w, self._memory_limit(w)) for w in works if w.running.is_set()]
            limited = [(w, lim) for w, lim in limited if lim]
            if limited:
                rss = self._rss_by_session()
                for w, lim in limited:
                    proc = w.proc
                    if proc is not None and rss.get(proc.pid, 0) > lim:
                        w.kill("oom")
            for w in works:
                left = self._deadline_left(w)
                if left is not None and left <= 0 and not w.deleting:
                    w.kill("deadline")

    # ------------------------------------------------------------------ log server
    def _start_log_server(self):
        cert_pem, key_pem = self_signed_cert("node-agent")
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        (pki / "agent.crt").write_bytes(cert_pem)
        (pki / "agent.key").write_bytes(key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki / "agent.crt"), str(pki / "agent.key"))
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                log.debug("log server: " + fmt, *args)

            def do_GET(self):
                agent._serve_logs(self)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        t = threading.Thread(target=server.serve_forever, name="node-agent-logs", daemon=True)
        t.start()
        self._threads.append(t)

    def _serve_logs(self, h: http.server.BaseHTTPRequestHandler):
        """GET /containerLogs/{ns}/{pod}/{container}?follow&tailLines&timestamps&limitBytes&sinceSeconds&previous"""
        url = urllib.parse.urlsplit(h.path)
        parts = url.path.strip("/").split("/")
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        if len(parts) != 4 or parts[0] != "containerLogs":
            h.send_error(404, "not found")
            return
        _, ns, name, container = parts
        with self._lock:
            w = self.by_name.get((ns, name))
        if w is None or w.container["name"] != container:
            h.send_error(404, 'container "%s" in pod "%s" is not available' % (container, name))
            return
        truthy = ("true", "1")
        restart = w.restart_count - (1 if q.get("previous") in truthy else 0)
        path = w.log_path(restart)
        if restart < 0 or not path.exists():
            h.send_error(400, 'container "%s" in pod "%s" is waiting to start' % (container, name))
            return
        since = None
        if "sinceSeconds" in q:
            since = time.time() - float(q["sinceSeconds"])
        elif "sinceTime" in q:
            since = parse_time(q["sinceTime"])
        stamps = q.get("timestamps") in truthy
        limit = int(q["limitBytes"]) if "limitBytes" in q else None
        tail = int(q["tailLines"]) if "tailLines" in q else None

        def render(line: bytes):
            ts, _, rest = line.partition(b" ")
            _stream, _, rest = rest.partition(b" ")
            tag, _, content = rest.rstrip(b"\n").partition(b" ")
            if since is not None and parse_time(ts.decode()) < since:
                return b""
            out = content + (b"\n" if tag == b"F" else b"")
            return (ts + b" " + out) if stamps else out

        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.end_headers()
        sent = 0
        try:
            with open(path, "rb") as f:
                lines = f.readlines()
                if tail is not None:
                    lines = lines[-tail:] if tail > 0 else []
                for line in lines:
                    data = render(line)
                    if limit is not None:
                        data = data[: max(0, limit - sent)]
                    h.wfile.write(data)
                    sent += len(data)
                h.wfile.flush()
                if q.get("follow") not in truthy or restart != w.restart_count:
                    return
                while limit is None or sent < limit:
                    line = f.readline()
                    if line.endswith(b"\n"):
                        h.wfile.write(render(line))
                        h.wfile.flush()
                        continue
                    f.seek(f.tell() - len(line))
                    if not w.running.is_set() and (w.proc is None or w.proc.poll() is not None):
                        rest = f.read()
                        for l2 in rest.splitlines(keepends=True):
                            h.wfile.write(render(l2))
                        return
                    time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
