"""Kubernetes API requests per pod: the kubernetes backend beside Luigi's own KubernetesJobTask.

    python benchmarks/bench_kubernetes_requests.py [ELEMENTS] [--peer-tasks 100] [--peer-workers 10]
        [--peer-poll-interval 5] [--max-in-flight 50] [--skip-ours] [--skip-peer]

Starts the real local control plane of tests/infra/cluster (etcd, kube-apiserver, scheduler, controller
manager, and the node agent that runs each pod as a local process with this Python) and a
fake-gcs-server, then:

1. ours: `Client(settings).map(fn, range(ELEMENTS))` with backend=kubernetes and a trivial fn;
2. the peer: `luigi.contrib.kubernetes.KubernetesJobTask` (pykube-ng), one Kubernetes Job per task,
   each running `python -c "print(1)"` in the same image, through `luigi.build(..., workers=W)`.

Requests are read from the API server's `apiserver_request_total` (deltas over each run) and
sorted by the kinds of request each client makes: the metric has no client label, so every kind is
attributed to the one client known to send it (see `ours_kinds`, `peer_kinds`); the rest (node
agent, scheduler, controller manager, heartbeats) is printed apart. Prints figures, asserts nothing.

The peer runs fewer tasks (default 100): it polls each Job on its own, so its requests per pod do not
change with the number of tasks, and each task holds a Luigi worker process for a few seconds at
least (a 5 s wait for the Job's pod, then polls). It needs pykube-ng (`pip install pykube-ng`) and
runs in a fresh Python process: Luigi forks a process per task, and a fork of this process (node
agent and API client threads) once left a task's process stuck on a lock for good.
"""

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict, namedtuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from infra.servers import FakeGCS  # noqa: E402
from infra.cluster.fixtures import start_cluster, stop_cluster  # noqa: E402

Kind = namedtuple("Kind", "verb group resource subresource scope code")
_LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def snapshot(cluster):
    """apiserver_request_total summed by Kind."""
    counts = defaultdict(float)
    for line in cluster.control_plane.metrics().splitlines():
        if line.startswith("apiserver_request_total{"):
            labels_s, _, value = line.rpartition(" ")
            labels = dict(_LABELS.findall(labels_s))
            counts[Kind(*(labels.get(f, "") for f in Kind._fields))] += float(value)
    return counts


def delta(before, after):
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] - before.get(k, 0.0) > 0}


def open_watches(cluster, resource, scope):
    """WATCH requests still open (they are counted in apiserver_request_total only when they end)."""
    total = 0.0
    for line in cluster.control_plane.metrics().splitlines():
        if line.startswith("apiserver_longrunning_requests{"):
            labels_s, _, value = line.rpartition(" ")
            labels = dict(_LABELS.findall(labels_s))
            if labels.get("verb") == "WATCH" and labels.get("resource") == resource and labels.get("scope") == scope:
                total += float(value)
    return total


def wait_watches_closed(cluster, resource, scope, timeout=30):
    deadline = time.monotonic() + timeout
    while open_watches(cluster, resource, scope) and time.monotonic() < deadline:
        time.sleep(0.5)


# -- who makes which request -------------------------------------------------------------------


def _is(verb, resource, subresource="", scope=None, code=None, group=""):
    return lambda k: (
        k.verb == verb
        and k.resource == resource
        and k.subresource == subresource
        and k.group == group
        and (scope is None or k.scope == scope)
        and (code is None or k.code == code)
    )


def _any(*tests):
    return lambda k: any(t(k) for t in tests)


# The master's requests: the kinds tests/backends/test_kubernetes_backend.py's master_requests counts.
ours_kinds = [
    ("POST pods (create)", _is("POST", "pods")),
    ("DELETE pods (answered 200)", _is("DELETE", "pods", code="200")),
    ("GET pods", _is("GET", "pods", scope="resource")),
    ("LIST pods (namespace)", _is("LIST", "pods", scope="namespace")),
    ("WATCH pods (namespace)", _is("WATCH", "pods", scope="namespace")),
    ("GET pods/log", _is("GET", "pods", "log")),
    ("secrets POST/PUT/DELETE", _any(*(_is(v, "secrets") for v in ("POST", "PUT", "DELETE")))),
    ("GET namespaces", _is("GET", "namespaces", scope="resource")),
]

# The node agent's per-pod requests (it plays the kubelet): for context, not the master's.
agent_kinds = [
    ("PATCH pods/status", _is("PATCH", "pods", "status")),
    ("GET pods/status", _is("GET", "pods", "status")),
    ("GET secrets", _is("GET", "secrets")),
    ("DELETE pods (answered 404)", _is("DELETE", "pods", code="404")),
]

# KubernetesJobTask (pykube-ng): its Job calls, and the pods LIST with a job-name selector.
peer_kinds = [
    ("POST jobs (create)", _is("POST", "jobs", group="batch")),
    ("LIST jobs (namespace)", _is("LIST", "jobs", scope="namespace", group="batch")),
    ("GET jobs (answered 200)", _is("GET", "jobs", scope="resource", code="200", group="batch")),
    ("PATCH jobs (scale to 0)", _is("PATCH", "jobs", scope="resource", group="batch")),
    ("DELETE jobs", _is("DELETE", "jobs", scope="resource", group="batch")),
    ("LIST pods (namespace)", _is("LIST", "pods", scope="namespace")),
    ("GET pods/log", _is("GET", "pods", "log")),
]

# What the controller manager does for the peer's Jobs: the Job controller creates and tracks the
# pods, the garbage collector deletes them after the Job is deleted.
controller_kinds = [
    ("POST pods (Job controller creates them)", _is("POST", "pods")),
    ("PATCH pods (Job controller: tracking finalizer)", _is("PATCH", "pods", scope="resource")),
    (
        "PUT/PATCH jobs/status",
        _any(_is("PUT", "jobs", "status", group="batch"), _is("PATCH", "jobs", "status", group="batch")),
    ),
    ("DELETE pods (answered 200: garbage collector)", _is("DELETE", "pods", code="200")),
    ("GET pods (garbage collector: the dependent's latest version)", _is("GET", "pods", scope="resource")),
    ("GET jobs (answered 404: garbage collector)", _is("GET", "jobs", scope="resource", code="404", group="batch")),
    ("POST events", _any(_is("POST", "events"), _is("POST", "events", group="events.k8s.io"))),
]


def split(counts, kinds):
    """{label: count} for the kinds, and the counts no kind claimed."""
    rest, found = dict(counts), {}
    for label, test in kinds:
        found[label] = sum(v for k, v in counts.items() if test(k))
        rest = {k: v for k, v in rest.items() if not test(k)}
    return found, rest


def print_table(title, found, per, unit="pod"):
    total = sum(found.values())
    print("  %s: %d requests, %.2f per %s" % (title, total, total / per if per else 0, unit))
    for label, count in found.items():
        if count:
            print("    %-50s %7d  %6.3f per %s" % (label, count, count / per if per else 0, unit))
    return total


def print_rest(rest, seconds, top=12):
    total = sum(rest.values())
    print(
        "  everything else (scheduler, controller manager, node agent watches and heartbeats, leader "
        "election): %d requests over %.0fs" % (total, seconds)
    )
    for k, v in sorted(((k, v) for k, v in rest.items() if v > 0), key=lambda kv: -kv[1])[:top]:
        print(
            "    %-50s %7d"
            % (
                "%s %s%s%s (%s) %s"
                % (
                    k.verb,
                    k.group + "/" if k.group else "",
                    k.resource,
                    "/" + k.subresource if k.subresource else "",
                    k.scope,
                    k.code,
                ),
                v,
            )
        )


# -- ours ---------------------------------------------------------------------------------------


def trivial(x):
    return x + 1


def run_ours(cluster, gcs, workdir, elements, max_in_flight):
    from luigi_kubeface import Client, Settings

    namespace = cluster.create_namespace("kbench")
    bucket = "kbench-" + uuid.uuid4().hex[:8]
    gcs.create_bucket(bucket)
    settings = Settings(
        backend="kubernetes",
        storage_root="gs://%s/jobs" % bucket,
        image=cluster.image,
        namespace=namespace,
        kubeconfig=cluster.kubeconfig,
        cpu_request="50m",
        memory_request="64Mi",
        memory_limit="2Gi",
        max_in_flight=max_in_flight,
        pod_env={"STORAGE_EMULATOR_HOST": gcs.url, "GOOGLE_CLOUD_PROJECT": "test"},
        key_dir=os.path.join(workdir, "keys"),
    )
    before = snapshot(cluster)
    started = time.monotonic()
    results = Client(settings).map(trivial, range(elements), job_id="kbench-%d" % elements, progress=False)
    wall = time.monotonic() - started
    wait_watches_closed(cluster, "pods", "namespace")  # the backend closed its watch: let it be counted
    counts = delta(before, snapshot(cluster))
    seconds = time.monotonic() - started
    wrong = sum(1 for x, r in zip(range(elements), results) if r != x + 1)

    found, rest = split(counts, ours_kinds)
    pods = found["POST pods (create)"]
    agent, rest = split(rest, agent_kinds)
    print(
        "ours: luigi_kubeface kubernetes backend, Client.map(fn, range(%d)), max_in_flight=%d"
        % (elements, max_in_flight)
    )
    print(
        "  elements: %d (%d wrong results)   wall time: %.1fs   pods created (POST pods): %d"
        % (elements, wrong, wall, pods)
    )
    total = print_table("master API requests", found, pods)
    print_table("node agent (the kubelet's share, for context)", agent, pods)
    print_rest(rest, seconds)
    return {"elements": elements, "wall": wall, "pods": pods, "total": total, "per_pod": total / pods if pods else 0}


# -- the peer: luigi.contrib.kubernetes.KubernetesJobTask -------------------------------------


def peer_unavailable():
    """Why KubernetesJobTask cannot run here, or None."""
    if importlib.util.find_spec("pykube") is None:
        return "pykube-ng is not installed (pip install pykube-ng)"
    return None


def define_peer_task():
    import luigi
    from luigi.contrib.kubernetes import KubernetesJobTask

    class PrintOne(KubernetesJobTask):
        """One Kubernetes Job per task running `python -c "print(1)"`: what a Luigi user writes today."""

        index = luigi.IntParameter()
        out_dir = luigi.Parameter()
        image = luigi.Parameter()
        poll = luigi.FloatParameter(default=5.0)

        name = "kbench"

        @property
        def spec_schema(self):
            return {
                "containers": [{"name": "main", "image": self.image, "command": ["python", "-c", "print(1)"]}],
                "restartPolicy": "Never",
            }

        @property
        def poll_interval(self):
            return self.poll

        def output(self):
            return luigi.LocalTarget(os.path.join(self.out_dir, "%d.done" % self.index))

        def signal_complete(self):
            with self.output().open("w") as f:
                f.write("done\n")

    return PrintOne


def count_pods(cluster, namespace):
    """Pods left in the namespace, asked cluster-wide (so not counted as the peer's namespace LIST)."""
    core = cluster.core()
    return len(core.list_pod_for_all_namespaces(field_selector="metadata.namespace=" + namespace).items)


def peer_child(argv):
    """luigi.build in a fresh process: Luigi forks a worker process per task, and forking this
    benchmark's process (node agent and API client threads) can deadlock a child on a lock."""
    import luigi
    import luigi.configuration

    kubeconfig, namespace, out_dir, image, tasks, workers, poll = argv
    config = luigi.configuration.get_config()
    for option, value in (
        ("auth_method", "kubeconfig"),
        ("kubeconfig_path", kubeconfig),
        ("max_retrials", "0"),
        ("kubernetes_namespace", namespace),
    ):
        config.set("kubernetes", option, value)
    PrintOne = define_peer_task()
    started = time.monotonic()
    result = luigi.build(
        [PrintOne(index=i, out_dir=out_dir, image=image, poll=float(poll)) for i in range(int(tasks))],
        local_scheduler=True,
        workers=int(workers),
        detailed_summary=True,
        log_level="WARNING",
    )
    print(json.dumps({"wall": time.monotonic() - started, "status": result.status.name}))


def run_peer(cluster, workdir, tasks, workers, poll):
    why = peer_unavailable()
    if why:
        print("peer: Luigi's KubernetesJobTask could not run: %s" % why)
        return None
    namespace = cluster.create_namespace("kbench-peer")
    out_dir = os.path.join(workdir, "peer-out")
    os.makedirs(out_dir)
    before = snapshot(cluster)
    started = time.monotonic()
    child = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--peer-child",
            cluster.kubeconfig,
            namespace,
            out_dir,
            cluster.image,
            str(tasks),
            str(workers),
            str(poll),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = child.stdout.strip().splitlines()
    outcome = (
        json.loads(lines[-1])
        if child.returncode == 0 and lines
        else {"wall": float("nan"), "status": "exit %d" % child.returncode}
    )
    wall = outcome["wall"]
    done = len(os.listdir(out_dir))
    # The garbage collector deletes the Jobs' pods after the task returns: wait, with cluster-wide lists.
    own_lists, deadline = 0, time.monotonic() + 120
    while time.monotonic() < deadline:
        own_lists += 1
        if not count_pods(cluster, namespace):
            break
        time.sleep(1)
    counts = delta(before, snapshot(cluster))
    seconds = time.monotonic() - started
    cluster_list = Kind("LIST", "", "pods", "", "cluster", "200")
    counts[cluster_list] = counts.get(cluster_list, 0) - own_lists

    found, rest = split(counts, peer_kinds)
    controller, rest = split(rest, controller_kinds)
    agent, rest = split(rest, agent_kinds)
    pods = controller["POST pods (Job controller creates them)"]
    print(
        "peer: luigi.contrib.kubernetes.KubernetesJobTask (pykube-ng), %d tasks, luigi.build(workers=%d), "
        "poll_interval=%gs" % (tasks, workers, poll)
    )
    print(
        "  tasks: %d (%d done, luigi: %s)   wall time: %.1fs   pods created (by the Job controller): %d"
        % (tasks, done, outcome["status"], wall, pods)
    )
    total = print_table("KubernetesJobTask's own API requests", found, pods)
    print_table(
        "the controller manager's requests for those Jobs (Job controller, garbage collector)", controller, pods
    )
    print_table("node agent (the kubelet's share, for context)", agent, pods)
    print_rest(rest, seconds)
    return {
        "tasks": tasks,
        "wall": wall,
        "pods": pods,
        "total": total,
        "per_pod": total / pods if pods else 0,
        "with_controller": (total + sum(controller.values())) / pods if pods else 0,
    }


def main():
    if sys.argv[1:2] == ["--peer-child"]:
        return peer_child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("elements", type=int, nargs="?", default=1000)
    parser.add_argument("--max-in-flight", type=int, default=50)
    parser.add_argument("--peer-tasks", type=int, default=100)
    parser.add_argument("--peer-workers", type=int, default=10)
    parser.add_argument(
        "--peer-poll-interval", type=float, default=5.0, help="KubernetesJobTask.poll_interval (Luigi's default: 5s)"
    )
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kbench-") as workdir:
        gcs = FakeGCS(os.path.join(workdir, "gcs")).start()
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.url
        os.environ["GOOGLE_CLOUD_PROJECT"] = "test"
        cluster = start_cluster(os.path.join(workdir, "cluster"))
        try:
            ours = None if args.skip_ours else run_ours(cluster, gcs, workdir, args.elements, args.max_in_flight)
            print()
            peer = (
                None
                if args.skip_peer
                else run_peer(cluster, workdir, args.peer_tasks, args.peer_workers, args.peer_poll_interval)
            )
        finally:
            stop_cluster(cluster)
            gcs.stop()
    print()
    print("summary (apiserver_request_total; goal: at most 3 master requests per pod)")
    if ours:
        print(
            "  ours: %d elements, %d pods, %.1fs: %.2f master API requests per pod"
            % (ours["elements"], ours["pods"], ours["wall"], ours["per_pod"])
        )
    if peer:
        print(
            "  KubernetesJobTask: %d tasks, %d pods, %.1fs: %.2f requests per pod from the task, %.2f with the "
            "controller manager's work for its Jobs"
            % (peer["tasks"], peer["pods"], peer["wall"], peer["per_pod"], peer["with_controller"])
        )
        print(
            "  (the peer runs fewer tasks: each task polls its own Job and pods, so its requests per pod do not\n"
            "   shrink with more tasks, while each task holds a Luigi worker process for at least one poll interval)"
        )


if __name__ == "__main__":
    main()
