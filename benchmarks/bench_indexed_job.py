"""luigi-kubeface beside what a Kubernetes user would pick instead: an Indexed Job, on the real test node.

    python benchmarks/bench_indexed_job.py [--elements 200] [--parallelism 20] [--rounds 1] [--failures 3] [--failure-elements N]

Starts the tests' cluster with a real node (tests/infra/cluster: control plane, kubelet, containerd,
runc; pods run the image images/Dockerfile builds) and a fake-gcs-server on the pod network, then, in
one run, side by side:

1. ours: `Client(settings).map(trivial, range(N))`, max_in_flight = P, a fresh pod per element;
2. the peer: one Job with `completionMode: Indexed`, `completions: N`, `parallelism: P`,
   `backoffLimitPerIndex: 1`, the same image. Each pod reads its input (`inputs/<index>.json`) from
   the same bucket with the same client library and writes its result there, as our runner does.
   Its inputs are uploaded inside its timed span, as ours are.

For both: pod start latency (create -> Running, create -> Succeeded, p50 and p95, seen by a watch
from this process), the makespan, and the API requests per pod of the client and the controllers
acting for it (from the API server's audit log, by user: the master or the Job's driver, and the
job-controller; the kubelet's requests are the same on both sides and printed apart). Then what a user
sees when `--failures` elements raise. Rounds alternate the order; figures are medians and ratios.
Prints figures, asserts nothing.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from infra.cluster.controlplane import MASTER_USER  # noqa: E402
from infra.cluster.fixtures import start_real_cluster, stop_cluster  # noqa: E402
from infra.cluster.pod_network import PodNetwork  # noqa: E402
from infra.servers import FakeGCS  # noqa: E402

JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
KUBELET = "system:node:node-1"

PEER_SCRIPT = r"""
import json, os
from google.cloud import storage
bucket, prefix = os.environ["BUCKET"], os.environ["PREFIX"]
index = int(os.environ["JOB_COMPLETION_INDEX"])
b = storage.Client().bucket(bucket)
x = json.loads(b.blob("%s/inputs/%d.json" % (prefix, index)).download_as_bytes())
if x in json.loads(os.environ["FAIL"]):
    raise ValueError("element %d is wrong" % x)
b.blob("%s/results/%d.json" % (prefix, index)).upload_from_string(json.dumps(x * x), if_generation_match=0)
"""


def trivial(x, fail=()):
    if x in fail:
        raise ValueError("element %d is wrong" % x)
    return x * x


class PodTimes:
    """First sight, Running and Succeeded of every pod in a namespace, on this process's clock."""

    def __init__(self, cluster, namespace):
        self.cluster, self.namespace = cluster, namespace
        self.created, self.running, self.succeeded = {}, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from kubernetes import watch

        core = self.cluster.core()
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(core.list_namespaced_pod, self.namespace, timeout_seconds=5):
                    self._see(event["object"], time.monotonic())
                    if self._stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - a dropped watch: start again
                time.sleep(0.1)

    def _see(self, pod, now):
        name = pod.metadata.name
        self.created.setdefault(name, now)
        phase = pod.status.phase if pod.status else None
        statuses = (pod.status.container_statuses or []) if pod.status else []
        if phase == "Running" or any(s.state and (s.state.running or s.state.terminated) for s in statuses):
            self.running.setdefault(name, now)
        if phase == "Succeeded":
            self.succeeded.setdefault(name, now)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def latencies(self):
        to_running = [self.running[n] - self.created[n] for n in self.running if n in self.created]
        to_done = [self.succeeded[n] - self.created[n] for n in self.succeeded if n in self.created]
        return to_running, to_done


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def requests(cluster):
    cp = cluster.control_plane
    return {
        who: cp.requests_of(user)
        for who, user in (("client", MASTER_USER), ("job-controller", JOB_CONTROLLER), ("kubelet", KUBELET))
    }


def run_ours(cluster, gcs, namespace, n, parallelism, fail=()):
    import functools

    from luigi_kubeface import Client, Settings
    from luigi_kubeface.errors import JobFailedError

    root = "gs://bench-%s/jobs" % uuid.uuid4().hex[:8]
    gcs.create_bucket(root[5:].split("/")[0])
    settings = Settings(
        backend="kubernetes",
        storage_root=root,
        image=cluster.image,
        namespace=namespace,
        kubeconfig=cluster.master_kubeconfig,
        cpu_request="10m",
        memory_request="64Mi",
        memory_limit="512Mi",
        max_in_flight=parallelism,
        retries=1,
        retry_backoff=0.5,
        failure_budget=0.5,
        pod_env={"STORAGE_EMULATOR_HOST": gcs.url, "GOOGLE_CLOUD_PROJECT": "test"},
    )
    started = time.monotonic()
    error = None
    try:
        Client(settings).map(functools.partial(trivial, fail=tuple(fail)), list(range(n)), job_id="bench")
    except JobFailedError as failure:
        error = str(failure)
    return time.monotonic() - started, error


def run_peer(cluster, gcs, namespace, n, parallelism, fail=()):
    from google.cloud import storage
    from kubernetes import client

    bucket_name = "peer-%s" % uuid.uuid4().hex[:8]
    gcs.create_bucket(bucket_name)
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=cluster.master_kubeconfig, client_configuration=configuration)
    master = client.ApiClient(configuration)
    batch = client.BatchV1Api(master)
    started = time.monotonic()
    bucket = storage.Client().bucket(bucket_name)
    for i in range(n):  # what our master uploads too: one input per element
        bucket.blob("jobs/inputs/%d.json" % i).upload_from_string(json.dumps(i))
    env = [
        {"name": k, "value": v}
        for k, v in (
            ("BUCKET", bucket_name),
            ("PREFIX", "jobs"),
            ("FAIL", json.dumps(list(fail))),
            ("STORAGE_EMULATOR_HOST", gcs.url),
            ("GOOGLE_CLOUD_PROJECT", "test"),
        )
    ]
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "peer"},
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": parallelism,
            "backoffLimitPerIndex": 1,
            "maxFailedIndexes": n,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532},
                    "containers": [
                        {
                            "name": "main",
                            "image": cluster.image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-c", PEER_SCRIPT],
                            "env": env,
                            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                        }
                    ],
                }
            },
        },
    }
    batch.create_namespaced_job(namespace, body, _preload_content=False)
    while True:  # what `kubectl wait --for=condition=complete` does: poll the Job
        job = json.loads(batch.read_namespaced_job("peer", namespace, _preload_content=False).data)
        conditions = {c["type"]: c for c in job.get("status", {}).get("conditions") or [] if c.get("status") == "True"}
        if "Complete" in conditions or "Failed" in conditions:
            break
        time.sleep(1)
    elapsed = time.monotonic() - started
    error = None
    if "Failed" in conditions:
        error = "Job peer: %s: %s; failedIndexes: %s" % (
            conditions["Failed"].get("reason"),
            conditions["Failed"].get("message"),
            job["status"].get("failedIndexes"),
        )
    master.close()
    return elapsed, error


def one(side, cluster, gcs, n, parallelism, fail=()):
    namespace = cluster.create_namespace("bench")
    before = requests(cluster)
    with PodTimes(cluster, namespace) as times:
        elapsed, error = (run_ours if side == "ours" else run_peer)(cluster, gcs, namespace, n, parallelism, fail)
    after = requests(cluster)
    cluster.delete_namespace(namespace, wait=False)
    used = {k: after[k] - before[k] for k in after}
    to_running, to_done = times.latencies()
    pods = max(len(times.created), 1)
    return {
        "makespan": elapsed,
        "error": error,
        "pods": len(times.created),
        "running_p50": percentile(to_running, 0.5),
        "running_p95": percentile(to_running, 0.95),
        "done_p50": percentile(to_done, 0.5),
        "done_p95": percentile(to_done, 0.95),
        "requests_per_pod": (used["client"] + used["job-controller"]) / pods,
        "kubelet_per_pod": used["kubelet"] / pods,
    }


def print_table(runs, args):
    print(
        "\n%d trivial elements, parallelism (max_in_flight) %d, %d round(s); medians:"
        % (args.elements, args.parallelism, args.rounds)
    )
    print("%-22s %10s %10s %8s" % ("", "ours", "peer", "ratio"))
    for field in (
        "makespan",
        "running_p50",
        "running_p95",
        "done_p50",
        "done_p95",
        "requests_per_pod",
        "kubelet_per_pod",
    ):
        ours = statistics.median(x[field] for x in runs["ours"])
        peer = statistics.median(x[field] for x in runs["peer"])
        print("%-22s %10.2f %10.2f %8.2f" % (field, ours, peer, ours / peer if peer else float("nan")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=200)
    parser.add_argument("--parallelism", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--failures", type=int, default=3, help="elements that raise in the failure runs")
    parser.add_argument(
        "--failure-elements", type=int, default=0, help="elements of the failure runs (default: --elements)"
    )
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-indexed-job-")
    network = PodNetwork.allocate()
    gcs = FakeGCS(os.path.join(work, "gcs"), host=network.gateway).start()
    os.environ.update(STORAGE_EMULATOR_HOST=gcs.url, GOOGLE_CLOUD_PROJECT="test")
    started = time.monotonic()
    cluster = start_real_cluster(os.path.join(work, "cluster"), network)
    print(
        "cluster ready in %.0fs (images imported in %.0fs)"
        % (time.monotonic() - started, cluster.node.timings.get("images_imported", 0))
    )
    try:
        runs = {"ours": [], "peer": []}
        for r in range(args.rounds):
            for side in ("ours", "peer") if r % 2 == 0 else ("peer", "ours"):
                runs[side].append(one(side, cluster, gcs, args.elements, args.parallelism))
                print(
                    "round %d %s: %s"
                    % (
                        r + 1,
                        side,
                        json.dumps(
                            {k: (round(v, 2) if isinstance(v, float) else v) for k, v in runs[side][-1].items()}
                        ),
                    ),
                    flush=True,
                )
        if args.rounds:
            print_table(runs, args)
        if args.failures:
            n = args.failure_elements or args.elements
            fail = [int(i * n / (args.failures + 1)) for i in range(1, args.failures + 1)]
            print("\nWhen elements %s raise (ValueError), a user sees:" % fail)
            for side in ("ours", "peer"):
                result = one(side, cluster, gcs, args.failure_elements or args.elements, args.parallelism, fail)
                print(
                    "--- %s (makespan %.0fs)\n%s" % (side, result["makespan"], (result["error"] or "no error")[:1500])
                )
    finally:
        stop_cluster(cluster)
        gcs.stop()
        network.down()


if __name__ == "__main__":
    main()
