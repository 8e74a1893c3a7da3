"""A real, local Kubernetes control plane for tests: etcd, kube-apiserver,
kube-scheduler and kube-controller-manager as child processes.

Why real binaries: everything between luigi-kubeface and the API server
(validation, watches, selectors, quotas, conflicts, garbage collection) is then
the real thing. The binaries come from ``build.sh`` (cached under ~/.cache).
There is no kubelet: ``node_agent.NodeAgent`` plays it.

Usage::

    cp = ControlPlane(workdir)
    cp.start()            # certs, etcd, apiserver (/readyz), scheduler, KCM
    cp.kubeconfig         # admin kubeconfig path (O=system:masters)
    cp.api_get("/metrics")
    cp.stop()             # kills every process group, no leftovers
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"


MASTER_USER = "kubeface-master"
# Every request, without bodies: the audit log tells whose requests they were (requests_of).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


class ControlPlaneError(RuntimeError):
    """A component failed to start or become healthy (see its log file)."""


def build_binaries(timeout: float = 3600) -> Path:
    """Run build.sh (a no-op when cached) and return the bin directory."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, timeout=timeout)
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (races are handled by retrying starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- certificates


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class CertAuthority:
    """A throwaway CA issuing the serving and client certificates (EC P-256: fast to make)."""

    def __init__(self, cn: str = "luigi-kubeface-test-ca"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, cn: str, orgs=(), server_names=(), server_ips=(), client=False, server=False):
        """Issue a leaf certificate; returns (cert_pem, key_pem)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        now = datetime.datetime.now(datetime.timezone.utc)
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
            [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans = [x509.DNSName(n) for n in server_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in server_ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _pem_cert(cert), _pem_key(key)

    @property
    def cert_pem(self) -> bytes:
        return _pem_cert(self.cert)

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)


def self_signed_cert(cn: str = "localhost", ips=("127.0.0.1",)):
    """A self-signed serving certificate (cert_pem, key_pem), e.g. for the node agent."""
    ca = CertAuthority(cn + "-ca")
    return ca.issue(cn, server_names=["localhost", cn], server_ips=ips, server=True)


# --------------------------------------------------------------------------- processes

_REAPER_SCRIPT = r"""
import json, os, signal, subprocess, sys
groups, cleanups = set(), {}
for line in sys.stdin:
    op, arg = line[0], line[1:].strip()
    if op in "+-":
        (groups.add if op == "+" else groups.discard)(int(arg))
    elif op == "!":
        key, argv = json.loads(arg)
        cleanups[key] = argv
    elif op == "?":
        cleanups.pop(arg, None)
for pgid in groups:  # stdin closed: the test process is gone, however it died
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
for argv in cleanups.values():  # then undo what they changed on the machine
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


class Reaper:
    """A watchdog process killing registered process groups when this process dies, then running the
    registered clean-up commands (a real node's: real_node.py).

    Why: atexit does not run on SIGKILL/SIGTERM of the test runner; without
    this, etcd, the API server and pod processes would outlive it.
    """

    _lock = threading.Lock()
    _proc: subprocess.Popen | None = None
    _owner_pid: int | None = None

    @classmethod
    def _send(cls, msg: str):
        with cls._lock:
            if cls._proc is None or cls._owner_pid != os.getpid() or cls._proc.poll() is not None:
                cls._proc = subprocess.Popen(
                    [sys.executable, "-c", _REAPER_SCRIPT],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    text=True,
                )
                cls._owner_pid = os.getpid()
            try:
                cls._proc.stdin.write(msg + "\n")
                cls._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass

    @classmethod
    def watch(cls, pgid: int):
        cls._send("+%d" % pgid)

    @classmethod
    def forget(cls, pgid: int):
        cls._send("-%d" % pgid)

    @classmethod
    def on_death(cls, key: str, argv: list):
        """Run argv once this process is gone (after the groups are killed), unless cancelled first."""
        cls._send("!" + json.dumps([key, [str(a) for a in argv]]))

    @classmethod
    def cancel(cls, key: str):
        cls._send("?" + key)

    @classmethod
    def close(cls):
        """At a normal exit: end of file tells the watchdog this process is gone; it is waited for, not
        left running behind a Popen the interpreter's shutdown finds still alive (a ResourceWarning)."""
        with cls._lock:
            if cls._proc is not None and cls._owner_pid == os.getpid():
                with contextlib.suppress(OSError, ValueError):
                    cls._proc.stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    cls._proc.wait(timeout=60)
            cls._proc = None


atexit.register(Reaper.close)  # registered first, so it runs after the components' own atexit stops


class Component:
    """One child process in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.probe = None  # () -> bool, set by ControlPlane: "healthy"

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(("\n=== %s\n" % " ".join(self.argv)).encode())
            log.flush()
            # A new session makes killpg reach every descendant, and keeps a
            # Ctrl-C in the test runner from racing our orderly shutdown.
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
            )
        Reaper.watch(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0):
        """SIGTERM the process group, SIGKILL it after ``timeout``; reap the child."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGCONT)  # a paused process would ignore SIGTERM until resumed
        except ProcessLookupError:
            pass
        steps = ((signal.SIGTERM, timeout),) if timeout > 0 else ()
        for sig, wait in steps + ((signal.SIGKILL, 5.0),):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure no grandchild survives in the group.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        Reaper.forget(pgid)
        self.proc = None


def _addr_in_use(component: Component) -> bool:
    return "address already in use" in component.log_tail(80).lower()


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + kube-apiserver + kube-scheduler + kube-controller-manager on 127.0.0.1.

    All state (certs, etcd data, kubeconfigs, logs) lives in ``workdir``; logs are
    ``workdir/logs/<component>.log``. ``node_monitor_grace_period`` is short by
    default so that node-failure tests (stopped heartbeats) do not wait 50 s.
    """

    def __init__(
        self,
        workdir,
        bin_dir=None,
        *,
        node_monitor_grace_period: str = "20s",
        extra_apiserver_args: list[str] | None = None,
        extra_controller_manager_args: list[str] | None = None,
        verbosity: int = 1,
        kubelet_tls: bool = False,
    ):
        self.workdir = Path(workdir).resolve()
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.node_monitor_grace_period = node_monitor_grace_period
        self.extra_apiserver_args = list(extra_apiserver_args or [])
        self.extra_controller_manager_args = list(extra_controller_manager_args or [])
        self.verbosity = verbosity
        # A real kubelet (real_node.py): the API server calls it with a client certificate and
        # verifies its serving certificate against the cluster CA (logs, exec).
        self.kubelet_tls = kubelet_tls
        self.components: dict[str, Component] = {}
        self.etcd_url: str | None = None
        self.apiserver_port: int | None = None
        self._ssl: ssl.SSLContext | None = None
        self._atexit_registered = False

    # -- paths and endpoints
    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client cert with O=system:masters)."""
        return self.workdir / "admin.kubeconfig"

    @property
    def master_kubeconfig(self) -> Path:
        """A kubeconfig of its own for luigi-kubeface's master (user MASTER_USER, O=system:masters)."""
        return self.workdir / "master.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    @property
    def url(self) -> str:
        """The API server URL, e.g. https://127.0.0.1:41234."""
        return "https://127.0.0.1:%d" % self.apiserver_port

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    # -- lifecycle
    def start(self, timeout: float = 120.0):
        """Start all components; raises ControlPlaneError (and cleans up) on failure."""
        if self.bin_dir is None:
            self.bin_dir = build_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._write_pki()
            self._start_with_port_retry(self._start_etcd, timeout)
            self._start_with_port_retry(self._start_apiserver, timeout)
            self._write_kubeconfigs()
            self._start_with_port_retry(self._start_scheduler, timeout)
            self._start_with_port_retry(self._start_controller_manager, timeout)
            self._wait_for_default_service_account(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop components in reverse order of start; safe to call twice."""
        for name in reversed(list(self.components)):
            self.components[name].stop()
        self.components.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def check_alive(self):
        """Raise if a component died (e.g. from a test's point of view, an outage)."""
        for c in self.components.values():
            if not c.alive():
                raise ControlPlaneError("%s is not running; log tail:\n%s" % (c.name, c.log_tail()))

    # -- outages (fault injection): same argv and ports, so clients keep working afterwards
    def stop_component(self, name: str, graceful: bool = False):
        """Stop one component (e.g. "kube-apiserver" for an API outage); restart with
        start_component. Default: SIGKILL, a crash (a graceful apiserver stop waits up to
        10 s for open watches)."""
        self.components[name].stop(timeout=10.0 if graceful else 0.0)

    def start_component(self, name: str, timeout: float = 60.0):
        """Restart a stopped component with its previous arguments and wait until healthy."""
        comp = self.components[name]
        if not comp.alive():
            comp.start()
        if not self._wait(comp, comp.probe, timeout):
            raise ControlPlaneError("%s did not come back; log tail:\n%s" % (name, comp.log_tail()))

    def pause_component(self, name: str):
        """SIGSTOP a component: requests hang instead of failing fast (a stuck server)."""
        os.killpg(self.components[name].proc.pid, signal.SIGSTOP)

    def resume_component(self, name: str):
        os.killpg(self.components[name].proc.pid, signal.SIGCONT)

    def _start_with_port_retry(self, start_fn, timeout: float, attempts: int = 3):
        """free_port() can race with other processes: retry on 'address already in use'."""
        for attempt in range(attempts):
            comp = start_fn(timeout)
            if comp is None:
                return
            if attempt + 1 < attempts and _addr_in_use(comp):
                comp.stop()
                continue
            raise ControlPlaneError("%s failed to start; log %s:\n%s" % (comp.name, comp.log_path, comp.log_tail()))

    def _launch(self, name: str, argv: list[str]) -> Component:
        comp = Component(name, argv, self.logs / (name + ".log"))
        comp.start()
        self.components[name] = comp
        return comp

    def _wait(self, comp: Component, probe, timeout: float) -> bool:
        """Poll ``probe`` until true; False if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not comp.alive():
                return False
            try:
                if probe():
                    return True
            except (OSError, urllib.error.URLError, ssl.SSLError, ValueError):
                pass
            time.sleep(0.2)
        return False

    # -- PKI
    def _write_pki(self):
        self.pki.mkdir(parents=True, exist_ok=True)
        ca = CertAuthority()
        self._ca = ca
        files = {"ca.crt": ca.cert_pem, "ca.key": ca.key_pem}
        files["apiserver.crt"], files["apiserver.key"] = ca.issue(
            "kube-apiserver",
            server_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            server_ips=["127.0.0.1", "10.0.0.1"],
            server=True,
        )
        for name, cn, orgs in (
            ("admin", "kubernetes-admin", ["system:masters"]),
            # The identity luigi-kubeface's master uses in tests: its requests are told apart in the audit log.
            ("master", MASTER_USER, ["system:masters"]),
            ("scheduler", "system:kube-scheduler", []),
            ("controller-manager", "system:kube-controller-manager", []),
        ):
            files[name + ".crt"], files[name + ".key"] = ca.issue(cn, orgs=orgs, client=True)
        if self.kubelet_tls:
            files["apiserver-kubelet-client.crt"], files["apiserver-kubelet-client.key"] = ca.issue(
                "kube-apiserver-kubelet-client", orgs=["system:masters"], client=True
            )
        # Front-proxy (request header) CA: without it the scheduler and controller-manager
        # log errors forever about a missing requestheader client CA.
        fp = CertAuthority("luigi-kubeface-front-proxy-ca")
        files["front-proxy-ca.crt"] = fp.cert_pem
        files["front-proxy-client.crt"], files["front-proxy-client.key"] = fp.issue("front-proxy-client", client=True)
        # Service-account token signing key: RSA is what every consumer accepts.
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files["sa.key"] = _pem_key(sa)
        files["sa.pub"] = sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for fname, data in files.items():
            p = self.pki / fname
            p.write_bytes(data)
            if fname.endswith(".key"):
                p.chmod(0o600)

    def _kubelet_tls_args(self) -> list[str]:
        if not self.kubelet_tls:
            return []
        return [
            "--kubelet-client-certificate=%s" % (self.pki / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key=%s" % (self.pki / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority=%s" % self.ca_file,
        ]

    def issue_cert(self, name: str, cn: str, orgs=(), server_names=(), server_ips=(), client=False, server=False):
        """A certificate from the cluster CA, written as pki/<name>.crt and .key (e.g. a kubelet's);
        returns (cert path, key path). Call after start()."""
        cert, key = self._ca.issue(
            cn, orgs=orgs, server_names=server_names, server_ips=server_ips, client=client, server=server
        )
        (self.pki / (name + ".crt")).write_bytes(cert)
        (self.pki / (name + ".key")).write_bytes(key)
        (self.pki / (name + ".key")).chmod(0o600)
        return self.pki / (name + ".crt"), self.pki / (name + ".key")

    def write_kubeconfig(self, path: Path, name: str):
        """A kubeconfig for the client certificate pki/<name>.crt (see issue_cert)."""
        self._write_kubeconfig(Path(path), name)

    def _write_kubeconfig(self, path: Path, user: str):
        def b64(f):
            return base64.b64encode((self.pki / f).read_bytes()).decode()

        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "local", "cluster": {"server": self.url, "certificate-authority-data": b64("ca.crt")}}
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate-data": b64(user + ".crt"), "client-key-data": b64(user + ".key")},
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        # JSON is valid YAML: every kubeconfig loader reads it.
        path.write_text(json.dumps(cfg, indent=2))
        path.chmod(0o600)

    def _write_kubeconfigs(self):
        self._write_kubeconfig(self.kubeconfig, "admin")
        self._write_kubeconfig(self.master_kubeconfig, "master")
        for user in ("scheduler", "controller-manager"):
            self._write_kubeconfig(self.workdir / (user + ".kubeconfig"), user)

    # -- components
    def _start_etcd(self, timeout):
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = "http://127.0.0.1:%d" % client_port
        peer = "http://127.0.0.1:%d" % peer_port
        data_dir = self.workdir / "etcd-data"
        comp = self._launch(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                "--data-dir=%s" % data_dir,
                "--listen-client-urls=%s" % self.etcd_url,
                "--advertise-client-urls=%s" % self.etcd_url,
                "--listen-peer-urls=%s" % peer,
                "--initial-advertise-peer-urls=%s" % peer,
                "--initial-cluster=default=%s" % peer,
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy():
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"

        comp.probe = healthy
        return None if self._wait(comp, healthy, timeout) else comp

    def _start_apiserver(self, timeout):
        self.apiserver_port = free_port()
        pki = self.pki
        policy = self.workdir / "audit-policy.json"
        policy.write_text(json.dumps(AUDIT_POLICY))
        comp = self._launch(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                "--etcd-servers=%s" % self.etcd_url,
                "--cert-dir=%s" % (self.workdir / "apiserver-certs"),
                "--tls-cert-file=%s" % (pki / "apiserver.crt"),
                "--tls-private-key-file=%s" % (pki / "apiserver.key"),
                "--secure-port=%d" % self.apiserver_port,
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The lease reconciler refuses loopback addresses; nothing here needs the endpoints.
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--client-ca-file=%s" % (pki / "ca.crt"),
                "--service-account-issuer=https://127.0.0.1:%d" % self.apiserver_port,
                "--service-account-key-file=%s" % (pki / "sa.pub"),
                "--service-account-signing-key-file=%s" % (pki / "sa.key"),
                # ResourceQuota etc. are on by default in recent releases; be explicit.
                "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
                "TaintNodesByCondition,DefaultTolerationSeconds,ResourceQuota,NodeRestriction",
                "--requestheader-client-ca-file=%s" % (pki / "front-proxy-ca.crt"),
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--proxy-client-cert-file=%s" % (pki / "front-proxy-client.crt"),
                "--proxy-client-key-file=%s" % (pki / "front-proxy-client.key"),
                # The node agent's log server is reached by InternalIP with a self-signed cert.
                "--kubelet-preferred-address-types=InternalIP",
                *self._kubelet_tls_args(),
                "--allow-privileged=true",
                "--audit-policy-file=%s" % policy,
                "--audit-log-path=%s" % self.audit_log,
                "--audit-log-maxsize=0",
                "--v=%d" % self.verbosity,
            ]
            + self.extra_apiserver_args,
        )
        comp.probe = lambda: self.api_get("/readyz", timeout=2) == "ok"
        return None if self._wait(comp, comp.probe, timeout) else comp

    def _kube_common(self, kubeconfig: Path, port: int) -> list[str]:
        return [
            "--kubeconfig=%s" % kubeconfig,
            "--authentication-kubeconfig=%s" % kubeconfig,
            "--authorization-kubeconfig=%s" % kubeconfig,
            "--bind-address=127.0.0.1",
            "--secure-port=%d" % port,
            "--leader-elect=false",
            "--v=%d" % self.verbosity,
        ]

    def _healthz(self, port: int) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # components serve an in-memory self-signed cert
        with urllib.request.urlopen("https://127.0.0.1:%d/healthz" % port, context=ctx, timeout=2) as r:
            return r.read().decode().strip() == "ok"

    def _start_scheduler(self, timeout):
        port = free_port()
        comp = self._launch(
            "kube-scheduler",
            [str(self.bin_dir / "kube-scheduler")] + self._kube_common(self.workdir / "scheduler.kubeconfig", port),
        )
        comp.probe = lambda: self._healthz(port)
        return None if self._wait(comp, comp.probe, timeout) else comp

    def _start_controller_manager(self, timeout):
        port = free_port()
        pki = self.pki
        comp = self._launch(
            "kube-controller-manager",
            [str(self.bin_dir / "kube-controller-manager")]
            + self._kube_common(self.workdir / "controller-manager.kubeconfig", port)
            + [
                "--controllers=*",
                "--use-service-account-credentials=true",
                "--service-account-private-key-file=%s" % (pki / "sa.key"),
                "--root-ca-file=%s" % (pki / "ca.crt"),
                "--cluster-signing-cert-file=%s" % (pki / "ca.crt"),
                "--cluster-signing-key-file=%s" % (pki / "ca.key"),
                "--service-cluster-ip-range=10.0.0.0/24",
                # Node lifecycle is fed by the node agent's Lease heartbeats.
                "--node-monitor-period=2s",
                "--node-monitor-grace-period=%s" % self.node_monitor_grace_period,
            ]
            + self.extra_controller_manager_args,
        )
        comp.probe = lambda: self._healthz(port)
        return None if self._wait(comp, comp.probe, timeout) else comp

    def _wait_for_default_service_account(self, timeout):
        """Pods are rejected until the ServiceAccount controller made 'default': wait for it."""
        comp = self.components["kube-controller-manager"]

        def exists():
            try:
                self.api_get("/api/v1/namespaces/default/serviceaccounts/default", timeout=2)
                return True
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return False
                raise

        if not self._wait(comp, exists, timeout):
            raise ControlPlaneError(
                "default ServiceAccount never appeared; controller-manager log:\n%s" % comp.log_tail()
            )

    # -- raw HTTP access (metrics, health), as the admin user
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
            self._ssl = ctx
        return self._ssl

    def api_get(self, path: str, timeout: float = 10.0) -> str:
        """GET ``path`` from the API server as admin; raises urllib.error.HTTPError."""
        with urllib.request.urlopen(self.url + path, context=self.ssl_context(), timeout=timeout) as r:
            return r.read().decode()

    def metrics(self) -> str:
        """The API server's Prometheus text metrics."""
        return self.api_get("/metrics")

    def request_counts(self, **label_filter) -> float:
        """Sum of ``apiserver_request_total`` over series whose labels match ``label_filter``.

        E.g. ``request_counts(verb="LIST", resource="pods")``: lets tests assert
        that a backend does not hammer the API server.
        """
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_s, _, value = line.rpartition(" ")
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels_s))
            if all(labels.get(k) == str(v) for k, v in label_filter.items()):
                total += float(value)
        return total

    def requests_of(self, user: str = MASTER_USER, **match) -> int:
        """How many requests ``user`` made, from the audit log; ``match`` filters on the event's verb
        ("create", "list", "watch" ...), resource, subresource, namespace and code (the response's).

        Why the audit log: the API server's metrics count every client alike, and a real kubelet makes
        about ten pod requests of its own per pod.
        """
        seen = set()
        try:
            with open(self.audit_log) as f:
                for line in f:
                    event = json.loads(line)
                    if event.get("user", {}).get("username") != user or event["auditID"] in seen:
                        continue
                    ref, status = event.get("objectRef") or {}, event.get("responseStatus") or {}
                    fields = {
                        "verb": event.get("verb"),
                        "resource": ref.get("resource"),
                        "subresource": ref.get("subresource", ""),
                        "namespace": ref.get("namespace"),
                        "code": status.get("code"),
                    }
                    if all(fields.get(k) == v for k, v in match.items()):
                        seen.add(event["auditID"])
        except FileNotFoundError:
            return 0
        return len(seen)
