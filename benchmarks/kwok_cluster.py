"""kwok's cluster for bench_kwok.py: the control plane, kwok and its fake nodes, the kubelet's part played
for every pod (FakeKubelet), the audit log's counts; and the peer, an Indexed Job, with its limits probed."""

import base64
import heapq
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from infra.cluster import controlplane
from infra.cluster.controlplane import MASTER_USER, Component, ControlPlane, build_binaries

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


def build_kwok():
    out = subprocess.run(
        ["bash", os.path.join(REPO, "tests/infra/cluster/build_kwok.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def start_control_plane(workdir):
    # Audit only the two clients measured: at 50,000 pods kwok's own status writes would fill the disk.
    controlplane.AUDIT_POLICY = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "users": [MASTER_USER, JOB_CONTROLLER]}, {"level": "None"}],
    }
    cp = ControlPlane(
        workdir / "controlplane",
        build_binaries(),
        extra_apiserver_args=["--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000"],
        extra_controller_manager_args=["--kube-api-qps=500", "--kube-api-burst=1000"],
    )
    cp.start()
    return cp


def start_kwok(cp, workdir, kwok_dir):
    stages = sorted(str(p) for p in (kwok_dir / "stages").glob("*.yaml"))
    argv = [
        str(kwok_dir / "kwok"),
        "--kubeconfig",
        str(cp.kubeconfig),
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-lease-duration-seconds=40",
        "--cidr=10.240.0.0/12",
        "--node-ip=10.239.0.1",
        "--server-address=127.0.0.1:0",
    ]
    for stage in stages:
        argv += ["--config", stage]
    kwok = Component("kwok", argv, workdir / "kwok.log")
    kwok.start()
    return kwok


def create_nodes(core, count):
    for i in range(count):
        name = "kwok-node-%d" % i
        core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
                },
                "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]},
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                },
            },
            _preload_content=False,
        )

    def ready():
        nodes = json.loads(core.list_node(label_selector="type=kwok", _preload_content=False).data)["items"]
        return sum(
            any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or [])
            for n in nodes
        )

    deadline = time.monotonic() + 300
    while ready() < count:
        if time.monotonic() > deadline:
            raise RuntimeError("kwok made only %d of %d nodes Ready" % (ready(), count))
        time.sleep(1)


def install_code_once():
    """A pod unpacks the job's code once, in a process of its own; this process plays every pod in threads, so
    it unpacks each archive once (beside the others' threads, and without putting a folder on sys.path per pod)."""
    import hashlib

    from luigi_kubeface.job.code import package

    if getattr(package.install, "once", False):
        return
    original, installed, lock = package.install, set(), threading.Lock()

    def install(archive, directory):
        digest = hashlib.sha256(archive).digest()
        with lock:
            if digest not in installed:
                original(archive, tempfile.mkdtemp(prefix="bench-kwok-code-"))
                installed.add(digest)

    install.once = True
    package.install = install


class FakeKubelet:
    """What the kubelet would do with the namespace's Running pods: ours run the runner's code, then
    every pod is marked Succeeded `delay` seconds after it went Running."""

    def __init__(self, api_client, namespace, delay, threads=8):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespace, self.delay = namespace, delay
        self._due, self._lock, self._stop = [], threading.Lock(), threading.Event()
        self._seen = set()
        self._pool = ThreadPoolExecutor(threads)
        self._keys = {}  # job url -> signing key
        self.attempts_run = 0
        self.errors = []

    def __enter__(self):
        install_code_once()
        threading.Thread(target=self._watch, daemon=True).start()
        threading.Thread(target=self._finish_due, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _watch(self):
        from kubernetes import watch

        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = json.loads(self.core.list_namespaced_pod(self.namespace, _preload_content=False).data)
                    version = listed["metadata"]["resourceVersion"]
                    for pod in listed["items"]:
                        self._see(pod)
                stream = watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    resource_version=version,
                    timeout_seconds=60,
                    _preload_content=False,
                )
                for event in stream:
                    pod = event["raw_object"]
                    version = pod["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._see(pod)
            except Exception as error:  # noqa: BLE001 - a gone watch: list again
                version = None
                if "410" not in str(error):
                    self.errors.append(str(error)[:200])
                time.sleep(0.5)

    def _see(self, pod):
        name, status = pod["metadata"]["name"], pod.get("status") or {}
        if status.get("phase") != "Running" or name in self._seen or pod["metadata"].get("deletionTimestamp"):
            return
        self._seen.add(name)
        self._pool.submit(self._start, pod)

    def _start(self, pod):
        try:
            self._run_attempt(pod)
        except Exception as error:  # noqa: BLE001 - reported at the end
            self.errors.append("%s: %s" % (pod["metadata"]["name"], error))
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + self.delay, pod["metadata"]["name"], pod))

    def _run_attempt(self, pod):
        from luigi_kubeface.bucket import attempts
        from luigi_kubeface.runner import attempt as runner
        from luigi_kubeface.backends.kubernetes.pod_spec import (
            ATTEMPT_LABEL,
            ELEMENT_LABEL,
            JOB_URL_ANNOTATION,
            secret_name,
        )
        from luigi_kubeface.storage import open_storage

        labels, annotations = pod["metadata"].get("labels") or {}, pod["metadata"].get("annotations") or {}
        if ELEMENT_LABEL not in labels:
            return  # the peer's pod: nothing of ours to run
        url = annotations[JOB_URL_ANNOTATION]
        if url not in self._keys:
            secret = json.loads(
                self.core.read_namespaced_secret(secret_name(url), self.namespace, _preload_content=False).data
            )
            env = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            self._keys[url] = runner.signing_key_from_env(env)
        storage = open_storage(url)
        element, attempt = labels[ELEMENT_LABEL], labels[ATTEMPT_LABEL]
        _, record = runner.execute_attempt(storage, element, attempt, bytes(self._keys[url]))
        attempts.write_record(storage, element, attempt, record)
        self.attempts_run += 1

    def _finish_due(self):
        while not self._stop.is_set():
            now, ready = time.monotonic(), []
            with self._lock:
                while self._due and self._due[0][0] <= now:
                    ready.append(heapq.heappop(self._due)[2])
            for pod in ready:
                self._succeed(pod)
            time.sleep(0.05)

    def _succeed(self, pod):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        statuses = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ]
        body = {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": statuses,
                "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
            }
        }
        try:
            self.core.patch_namespaced_pod_status(pod["metadata"]["name"], self.namespace, body, _preload_content=False)
        except Exception as error:  # noqa: BLE001 - a pod deleted meanwhile
            if "404" not in str(error):
                self.errors.append(str(error)[:200])


def audit_counts(cp, user, since_line):
    """{verb resource: count} of user's requests in the audit log after line since_line; and the new end."""
    counts, lines = {}, 0
    with open(cp.audit_log) as f:
        for lines, line in enumerate(f, 1):
            if lines <= since_line:
                continue
            event = json.loads(line)
            if event.get("user", {}).get("username") != user or event.get("stage") == "ResponseStarted":
                continue  # a watch is logged when it starts and when it ends: counted once
            ref = event.get("objectRef") or {}
            what = "%s %s%s" % (
                event.get("verb"),
                ref.get("resource", ""),
                "/" + ref["subresource"] if ref.get("subresource") else "",
            )
            counts[what] = counts.get(what, 0) + 1
    return counts, lines


def audit_end(cp):
    try:
        with open(cp.audit_log) as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def admin_configuration(cp):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return configuration


def run_peer(cp, kube, batch, args, n):
    namespace = "peer-%s" % uuid.uuid4().hex[:6]
    kube.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    since = audit_end(cp)
    from kubernetes import client

    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "peer"},
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": args.max_in_flight,
            "backoffLimitPerIndex": 1,
            "maxFailedIndexes": min(n, 100000),
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"type": "kwok"},
                    "tolerations": [KWOK_TAINT],
                    "containers": [
                        {
                            "name": "main",
                            "image": "kwok.invalid/none:1",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ],
                }
            },
        },
    }
    with FakeKubelet(client.ApiClient(admin_configuration(cp)), namespace, args.delay) as kubelet:
        started = time.monotonic()
        batch.create_namespaced_job(namespace, body, _preload_content=False)
        while True:
            job = json.loads(batch.read_namespaced_job("peer", namespace, _preload_content=False).data)
            conditions = {c["type"] for c in job.get("status", {}).get("conditions") or [] if c.get("status") == "True"}
            if conditions & {"Complete", "Failed"}:
                break
            time.sleep(1)
        makespan = time.monotonic() - started
    requests, _ = audit_counts(cp, JOB_CONTROLLER, since)
    return {
        "makespan": makespan,
        "ideal": n / args.max_in_flight * args.delay,
        "requests": requests,
        "per_pod": sum(requests.values()) / n,
        "ok": "Complete" in conditions,
        "errors": kubelet.errors[:3],
    }


LIMIT_PROBES = [  # (what, completions, parallelism, maxFailedIndexes): the documented limits of an Indexed Job
    ("completions 100,000 with backoffLimitPerIndex", 100000, 200, None),
    ("completions 100,001 with backoffLimitPerIndex", 100001, 200, None),
    ("completions 100,001, maxFailedIndexes 10,000", 100001, 200, 10000),
    ("completions 100,001, maxFailedIndexes 10,001", 100001, 200, 10001),
    ("parallelism 100,001", 200000, 100001, 10000),
]


def probe_peer_limits(batch, namespace):
    """Where the peer stops: each probe's Job created with dryRun (nothing is stored), the server's verdict."""
    from kubernetes.client.rest import ApiException

    verdicts = []
    for what, completions, parallelism, max_failed in LIMIT_PROBES:
        spec = {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimitPerIndex": 1,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "kwok.invalid/none:1"}]}
            },
        }
        if max_failed is not None:
            spec["maxFailedIndexes"] = max_failed
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "limit-probe"}, "spec": spec}
        try:
            batch.create_namespaced_job(namespace, body, dry_run="All", _preload_content=False)
            verdicts.append((what, "accepted"))
        except ApiException as error:
            message = json.loads(error.body).get("message", "") if error.body else str(error)
            verdicts.append((what, "rejected: " + message.split(": ", 1)[-1][:240]))
    return verdicts
