"""A real Kubernetes node for the tests: kubelet, containerd and runc, joined to the tests' ControlPlane.

Pods run in real containers from the image images/Dockerfile builds (node_image.py): a real memory
cgroup, real signals to PID 1, the real kubelet's status updates, logs and evictions.

What it takes from the machine, and gives back (machine_state.py): the kubelet sets sysctls at
start-up (restored as soon as the node is Ready), adds iptables chains, cgroups (under a root of
this node's own) and mounts (under its work folder); all of it is undone by stop(), and by the
cluster's watchdog if the test process dies. What it never does: contact an image registry (every
registry host points at a closed loopback port, checked at start-up) or let a pod leave the machine
(pod_network.py).

Usage::

    node = RealNode(control_plane, workdir, network, images={name: docker-archive path}).start()
    node.stop_kubelet(); node.start_kubelet(); node.restart_containerd(); node.kill_pod_process(ns, pod)
    node.stop()
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from . import machine_state
from .controlplane import Component, ControlPlaneError, Reaper, build_binaries, free_port

HERE = Path(__file__).resolve().parent
BUILD_NODE_SCRIPT = HERE / "build_node.sh"
CLOSED_PORT = "http://127.0.0.1:9"  # discard: nothing listens there, so any pull fails at once, locally
NODE_NAME = "node-1"


def build_node_binaries(timeout=3600):
    """Run build_node.sh (a no-op when cached): containerd's bin directory, with pause.tar beside it."""
    out = subprocess.run(
        ["bash", str(BUILD_NODE_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, timeout=timeout
    )
    return Path(out.stdout.strip().splitlines()[-1])


class RealNode:
    """One node: containerd and the kubelet as child processes (each in its own process group)."""

    def __init__(self, control_plane, workdir, network, images, name=NODE_NAME, kube_bin=None, node_bin=None):
        self.cp = control_plane
        self.workdir = Path(workdir).resolve()
        self.network = network
        self.images = dict(images)
        self.name = name
        self.kube_bin = Path(kube_bin) if kube_bin else build_binaries()
        self.node_bin = Path(node_bin) if node_bin else build_node_binaries()
        self.cgroup = "/kubeface-%s" % uuid.uuid4().hex[:8]
        # containerd's sockets live in a short folder of their own: a unix socket path has at most 104 bytes,
        # and a test's work folder can be longer.
        self.run_dir = Path("/tmp/kf-%s" % uuid.uuid4().hex[:8])
        self.state_file = self.workdir / "machine-state.json"
        self.containerd = None
        self.kubelet = None
        self.kubelet_port = None
        self.timings = {}

    # -- paths
    @property
    def socket(self):
        return self.run_dir / "containerd.sock"

    @property
    def logs(self):
        return self.workdir / "logs"

    def ctr(self, *args, check=True, timeout=300):
        """ctr against this node's containerd, in the CRI's namespace."""
        done = subprocess.run(
            [str(self.node_bin / "ctr"), "--address", str(self.socket), "-n", "k8s.io", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode:
            raise ControlPlaneError("ctr %s failed: %s" % (" ".join(map(str, args)), done.stderr.strip()[-2000:]))
        return done

    # -- lifecycle
    def start(self, timeout=120.0):
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(mode=0o700)
        machine_state.snapshot(
            self.state_file,
            binaries=[str(self.node_bin / "containerd"), str(self.node_bin / "containerd-shim-runc-v2")],
            folders=[str(self.workdir), str(self.run_dir)],
            cgroup=self.cgroup,
            remove=[str(self.run_dir)],
        )
        Reaper.on_death(str(self.state_file), [sys.executable, HERE / "machine_state.py", "restore", self.state_file])
        try:
            self._make_cgroup_root()
            self._start_containerd(timeout)
            self._import_images()
            self.check_no_registry()
            self._write_kubelet_files()
            self.start_kubelet(timeout)
            self.timings["ready"] = time.monotonic() - started
            restored = machine_state.restore_sysctls(json.loads(self.state_file.read_text())["sysctls"])
            self.timings["sysctls_restored"] = restored
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop the kubelet and containerd, kill the shims, undo every change to the machine."""
        for comp in (self.kubelet, self.containerd):
            if comp is not None:
                comp.stop(timeout=5.0)
        machine_state.restore(self.state_file)
        Reaper.cancel(str(self.state_file))

    # -- containerd
    def _make_cgroup_root(self):
        """The kubelet's cgroupRoot must exist in every hierarchy; cpuset needs its cpus and mems set."""
        for hierarchy in os.listdir(machine_state.CGROUP_ROOT):
            top = Path(machine_state.CGROUP_ROOT, hierarchy)
            if not (top / "cgroup.procs").exists():
                continue
            path = top / self.cgroup.strip("/")
            path.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (top / knob).exists():
                    (path / knob).write_text((top / knob).read_text())

    def _containerd_config(self):
        root = self.workdir / "containerd"
        certs = root / "certs.d"
        for host in ("_default", "docker.io", "registry.k8s.io", "kubeface.local"):
            (certs / host).mkdir(parents=True, exist_ok=True)
            # The full form: with only `server =`, containerd ignores the file and looks the registry up.
            (certs / host / "hosts.toml").write_text(
                'server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve", "push"]\n'
                % (CLOSED_PORT, CLOSED_PORT)
            )
        cni_conf = root / "cni" / "net.d"
        self.network.write_cni_config(cni_conf, root / "cni" / "ipam")
        pause = (self.node_bin.parent / "pause.name").read_text().strip()
        return "\n".join(
            [
                "version = 3",
                "root = %s" % json.dumps(str(root / "root")),
                "state = %s" % json.dumps(str(self.run_dir / "state")),
                "imports = []",
                "oom_score = 0",
                "disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.btrfs',"
                " 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper']",
                "[grpc]",
                "  address = %s" % json.dumps(str(self.socket)),
                "[ttrpc]",
                "  address = %s" % json.dumps(str(self.socket) + ".ttrpc"),
                "[plugins.'io.containerd.cri.v1.images']",
                "  snapshotter = 'overlayfs'",
                "  [plugins.'io.containerd.cri.v1.images'.pinned_images]",
                "    sandbox = %s" % json.dumps(pause),
                "  [plugins.'io.containerd.cri.v1.images'.registry]",
                "    config_path = %s" % json.dumps(str(certs)),
                "[plugins.'io.containerd.transfer.v1.local']",
                "  config_path = %s" % json.dumps(str(certs)),
                "[plugins.'io.containerd.cri.v1.runtime']",
                "  restrict_oom_score_adj = true",
                "  netns_mounts_under_state_dir = true",
                "  enable_cdi = false",
                "  [plugins.'io.containerd.cri.v1.runtime'.cni]",
                "    bin_dirs = ['/usr/lib/cni']",
                "    conf_dir = %s" % json.dumps(str(cni_conf)),
                "  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
                "    SystemdCgroup = false",
                "    BinaryName = '/usr/sbin/runc'",
                "    Root = %s" % json.dumps(str(root / "runc")),
                "",
            ]
        )

    def _start_containerd(self, timeout):
        config = self.workdir / "containerd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(self._containerd_config())
        env = dict(os.environ, PATH="%s:%s" % (self.node_bin, os.environ.get("PATH", "")))  # its own shim first
        self.containerd = Component(
            "containerd",
            [str(self.node_bin / "containerd"), "--config", str(config)],
            self.logs / "containerd.log",
            env=env,
        )
        self.containerd.probe = lambda: self.ctr("version", check=False, timeout=5).returncode == 0
        self.containerd.start()
        if not _wait(self.containerd, timeout):
            raise ControlPlaneError("containerd did not start; log tail:\n%s" % self.containerd.log_tail())

    def restart_containerd(self, timeout=60.0):
        """A containerd restart, as an upgrade or a crash does it: running containers (their shims) live on."""
        self.containerd.stop(timeout=5.0)
        self.containerd.start()
        if not _wait(self.containerd, timeout):
            raise ControlPlaneError("containerd did not come back; log tail:\n%s" % self.containerd.log_tail())

    def _import_images(self):
        started = time.monotonic()
        for archive in [self.node_bin.parent / "pause.tar", *self.images.values()]:
            self.ctr("images", "import", archive, timeout=900)
        self.timings["images_imported"] = time.monotonic() - started

    def check_no_registry(self):
        """A pull of an unknown image must fail at once, on loopback: nothing may reach a registry."""
        started = time.monotonic()
        done = self.ctr(
            "images",
            "pull",
            "--hosts-dir",
            self.workdir / "containerd" / "certs.d",
            "docker.io/library/kubeface-never-pulled:1",
            check=False,
            timeout=60,
        )
        output = done.stdout + done.stderr
        if done.returncode == 0 or "127.0.0.1:9" not in output:
            raise ControlPlaneError(
                "a pull of an unknown image did not fail on the closed loopback port "
                "(%s): the registry block does not hold:\n%s" % (CLOSED_PORT, output[-2000:])
            )
        self.timings["registry_check"] = time.monotonic() - started

    # -- kubelet
    def _write_kubelet_files(self):
        kdir = self.workdir / "kubelet"
        kdir.mkdir(parents=True, exist_ok=True)
        ip = self.network.gateway
        client_crt, client_key = self.cp.issue_cert(
            "node-" + self.name, "system:node:" + self.name, orgs=["system:nodes"], client=True
        )
        self.cp.write_kubeconfig(kdir / "kubeconfig", "node-" + self.name)
        serving_crt, serving_key = self.cp.issue_cert(
            "kubelet-serving-" + self.name,
            "system:node:" + self.name,
            server_names=[self.name, "localhost"],
            server_ips=[ip, "127.0.0.1"],
            server=True,
        )
        (kdir / "resolv.conf").write_text("nameserver 127.0.0.1\n")  # pods resolve nothing outside
        self.kubelet_port = free_port()
        config = {
            "kind": "KubeletConfiguration",
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "address": ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cp.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(serving_crt),
            "tlsPrivateKeyFile": str(serving_key),
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "containerRuntimeEndpoint": "unix://%s" % self.socket,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup,
            "failCgroupV1": False,
            "failSwapOn": False,
            "oomScoreAdj": 0,
            "maxOpenFiles": 20000,  # root lacks CAP_SYS_RESOURCE on these machines
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,  # imported images never come back
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
            "podLogsDir": str(self.workdir / "pod-logs"),
            "resolvConf": str(kdir / "resolv.conf"),
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "20s",
            "protectKernelDefaults": False,
            "registerNode": True,
            "localStorageCapacityIsolation": True,
        }
        (kdir / "config.json").write_text(json.dumps(config, indent=2))
        self._kubelet_argv = [
            str(self.kube_bin / "kubelet"),
            "--config=%s" % (kdir / "config.json"),
            "--kubeconfig=%s" % (kdir / "kubeconfig"),
            "--root-dir=%s" % (self.workdir / "kubelet-root"),
            "--cert-dir=%s" % (kdir / "pki"),
            "--node-ip=%s" % ip,
            "--hostname-override=%s" % self.name,
            "--v=1",
        ]

    def start_kubelet(self, timeout=120.0):
        """Start (or restart) the kubelet and wait until the Node is Ready."""
        if self.kubelet is None:
            env = dict(os.environ, PATH="%s:%s" % (self.node_bin, os.environ.get("PATH", "")))
            self.kubelet = Component("kubelet", self._kubelet_argv, self.logs / "kubelet.log", env=env)
        if not self.kubelet.alive():
            self.kubelet.start()
        self.kubelet.probe = self.ready
        if not _wait(self.kubelet, timeout):
            raise ControlPlaneError(
                "the kubelet's node did not become Ready; log tail:\n%s" % self.kubelet.log_tail(60)
            )

    def stop_kubelet(self):
        """The kubelet dies (SIGKILL): the node's heartbeats stop, its containers run on under containerd."""
        self.kubelet.stop(timeout=0.0)

    def ready(self):
        try:
            node = json.loads(self.cp.api_get("/api/v1/nodes/" + self.name, timeout=2))
        except Exception:  # noqa: BLE001 - not registered yet
            return False
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True" and not node.get("spec", {}).get("unschedulable")

    # -- faults on pods
    def pod_pid(self, namespace, name, container=None):
        """The host pid of the pod container's first process (its PID 1); container: its name, else the first."""
        pod = json.loads(self.cp.api_get("/api/v1/namespaces/%s/pods/%s" % (namespace, name)))
        for status in pod.get("status", {}).get("containerStatuses", []):
            if container in (None, status["name"]) and status.get("containerID"):
                cid = status["containerID"].split("://", 1)[1]
                info = self.ctr("task", "ls", check=True).stdout
                for line in info.splitlines()[1:]:
                    fields = line.split()
                    if fields and fields[0] == cid:
                        return int(fields[1])
        raise LookupError("pod %s/%s has no running container %r" % (namespace, name, container))

    def kill_pod_process(self, namespace, name, sig=signal.SIGKILL):
        os.kill(self.pod_pid(namespace, name), sig)


def _wait(comp, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not comp.alive():
            return False
        try:
            if comp.probe():
                return True
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
        time.sleep(0.2)
    return False
