"""Up to 50,000 elements through a real kube-apiserver: kwok's fake nodes, beside an Indexed Job.

    python benchmarks/bench_kwok.py [--sizes 1000,10000] [--nodes 200] [--max-in-flight 200] [--delay 2]
        [--restart-at 0.5] [--skip-peer]

Starts the tests' control plane (etcd, kube-apiserver, scheduler, controller manager: tests/infra/
cluster/build.sh), kwok (built from the Go module proxy by tests/infra/cluster/build_kwok.sh, cached)
managing --nodes fake nodes, and a fake-gcs-server. No kubelet runs: kwok makes each scheduled pod
Running, and this script plays the rest of the kubelet's part for every pod of the benchmark's
namespace, ours and the peer's alike: once a pod is Running, it waits --delay seconds and marks it
Succeeded. For our pods it first runs the attempt through the runner's own code in this process
(`runner.execute_attempt`: function and input read from the bucket, the result written once, the
record written), as the `instant` backend does, so the master sees what it sees from real pods.

For each size, side by side in one run:
1. ours: a master process (`luigi --module bench_pipelines TrivialMap` against a fresh luigid on
   127.0.0.1, or with --via client `Client.map`; backend kubernetes, max_in_flight) under the master's
   own user; its makespan against the ideal (N / max_in_flight x delay), its peak RSS and CPU seconds
   (wait4), its API requests per pod by verb (the audit log, which names the user), its pod watch's
   lists, relists, watches and events by type (the master logs them at close), the status page's
   read and render of the finished job, and the status message luigid shows for the job;
2. with --restart-at F: the same job with its master SIGKILLed once F of the elements are done and
   started again: the seconds until the new master has adopted every pod in flight (its log says so),
   and whether any element ran twice;
3. the peer: one Job, completionMode Indexed, completions N, parallelism max_in_flight, its pods
   completed the same way; its completion time and the job controller's requests per pod; and where
   it stops: Jobs at the documented limits created with dryRun, with the API server's verdicts.
Prints figures, asserts nothing.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from infra.cluster.controlplane import MASTER_USER  # noqa: E402
from infra.servers import FakeGCS  # noqa: E402
from kwok_cluster import (  # noqa: E402
    KWOK_TAINT,
    FakeKubelet,
    admin_configuration,
    audit_counts,
    audit_end,
    build_kwok,
    create_nodes,
    probe_peer_limits,
    run_peer,
    start_control_plane,
    start_kwok,
)

MASTER = r"""
import sys, json, logging
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
from luigi_kubeface import Client, Settings
values, n, job_id, profile = json.loads(sys.stdin.read())
if profile:  # --profile: where the master's CPU goes, by cumulative time
    import cProfile, pstats
    cProfile.run("Client(Settings(**values)).map(abs, list(range(n)), job_id=job_id)", profile)
    pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
else:
    Client(Settings(**values)).map(abs, list(range(n)), job_id=job_id)
print("MASTER DONE", flush=True)
"""


def master_settings(cp, gcs, namespace, root, args):
    return dict(
        backend="kubernetes",
        storage_root=root,
        image="kwok.invalid/none:1",
        namespace=namespace,
        kubeconfig=str(cp.master_kubeconfig),
        cpu_request="10m",
        memory_request="16Mi",
        max_in_flight=args.max_in_flight,
        poll_interval=0.5,
        element_timeout=3600,
        node_selector={"type": "kwok"},
        tolerations=[KWOK_TAINT],
        key_dir=str(args.workdir / "keys"),
        pod_env={"STORAGE_EMULATOR_HOST": gcs.url},
        pod_params_annotation=False,
        leave_pods_on_exit=True,
    )


def start_master(values, n, job_id, log_path, profile="", luigid=None):
    """Ours: `luigi ... TrivialMap` against luigid (settings in a luigi.cfg of their own), else Client.map."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(REPO, "benchmarks"), REPO]))
    log = open(log_path, "a")
    if luigid is None:
        master = subprocess.Popen(
            [sys.executable, "-c", MASTER], stdin=subprocess.PIPE, stdout=log, stderr=log, text=True, env=env, cwd=REPO
        )
        master.stdin.write(json.dumps([values, n, job_id, profile]))
        master.stdin.close()
        return master
    env["LUIGI_CONFIG_PATH"] = _luigi_config(values, Path(log_path).with_suffix(".cfg"))
    argv = (
        [sys.executable]
        + (["-m", "cProfile", "-o", profile] if profile else [])
        + ["-m", "luigi"]
        + [
            "--module",
            "bench_pipelines",
            "TrivialMap",
            "--n",
            str(n),
            "--workers",
            "1",
            "--logging-conf-file",
            _logging_config(Path(log_path).with_suffix(".logging.ini")),
        ]
        + luigid.flags()
    )
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=REPO)


def _luigi_config(values, path):
    """The master's settings as `[kubeface]` spells them (maps and lists as JSON)."""
    lines = ["[kubeface]"]
    for key, value in values.items():
        text = (
            json.dumps(value)
            if isinstance(value, (dict, list))
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        lines.append("%s = %s" % (key, text))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _logging_config(path):
    """Every logger at INFO to stderr with its time: the adoption line is timed from it."""
    path.write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=stderr\n[formatters]\nkeys=timed\n"
        "[logger_root]\nlevel=INFO\nhandlers=stderr\n"
        "[handler_stderr]\nclass=StreamHandler\nlevel=INFO\nformatter=timed\nargs=(sys.stderr,)\n"
        "[formatter_timed]\nformat=%(asctime)s %(name)s %(levelname)s: %(message)s\n"
    )
    return str(path)


def luigid_shows(luigid):
    """The status message luigid shows for the job's KubefaceJob task (its web page's)."""
    jobs = luigid.api("task_list", {"status": "DONE", "upstream_status": "", "search": "KubefaceJob"})
    if not isinstance(jobs, dict) or not jobs:
        return None
    return next(iter(jobs.values())).get("status_message")


def wait_master(master):
    _, status, usage = os.wait4(master.pid, 0)
    master.returncode = os.waitstatus_to_exitcode(status)
    return usage


def run_ours(cp, gcs, kube, args, n, restart_at=None):
    namespace = "ours-%s" % uuid.uuid4().hex[:6]
    kube.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    bucket = "bench-%s" % uuid.uuid4().hex[:8]
    gcs.create_bucket(bucket)
    root = "gs://%s/jobs" % bucket
    values = master_settings(cp, gcs, namespace, root, args)
    log_path = args.workdir / ("master-%s.log" % namespace)
    since = audit_end(cp)
    from kubernetes import client
    from common import Luigid

    luigid = None if args.via == "client" else Luigid()
    try:
        with FakeKubelet(client.ApiClient(admin_configuration(cp)), namespace, args.delay) as kubelet:
            started = time.monotonic()
            profile = str(args.workdir / ("profile-%s" % namespace)) if args.profile else ""
            master = start_master(values, n, "bench", log_path, profile, luigid)
            adopted_after = None
            if restart_at:
                _wait_done(root, int(n * restart_at))
                master.kill()
                wait_master(master)
                restarted = time.monotonic()
                master = start_master(values, n, "bench", log_path, luigid=luigid)
                adopted_at = _wait_for_line(log_path, re.compile(r"adopted \d+ pods"), restarted)
                adopted_after = adopted_at - restarted if adopted_at is not None else None
            usage = wait_master(master)
            makespan = time.monotonic() - started
        shows = luigid_shows(luigid) if luigid else "(Client.map: no luigid)"
    finally:
        if luigid:
            luigid.stop()
    requests, _ = audit_counts(cp, MASTER_USER, since)
    if profile and args.via != "client":
        import pstats

        with open(log_path, "a") as log:
            pstats.Stats(profile, stream=log).sort_stats("cumulative").print_stats(45)
    return {
        "makespan": makespan,
        "ideal": n / args.max_in_flight * args.delay,
        "rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "requests": requests,
        "per_pod": sum(requests.values()) / n,
        "ok": master.returncode == 0,
        "render_s": _render_seconds(root),
        "errors": kubelet.errors[:3],
        "adopted_after": adopted_after,
        "run_twice": _elements_run_twice(root),
        "watch": _watch_counts(log_path),
        "luigid_shows": shows,
        "log": str(log_path),
    }


def _watch_counts(log_path):
    """The pod watch's lists, relists, watches and events by type, as the (last) master logged them at close."""
    counts = None
    with open(log_path) as f:
        for line in f:
            if "pod watch counts: " in line:
                counts = json.loads(line.split("pod watch counts: ", 1)[1])
    return counts


def _job_url(root):
    """The job's URL under root: `bench` (Client.map) or the map task's id (luigi), once it is there."""
    from luigi_kubeface.storage import open_storage

    while True:
        jobs = [name.rstrip("/") for name in open_storage(root).children("") if name.endswith("/")]
        if jobs:
            return root + "/" + jobs[0]
        time.sleep(1)


def _wait_done(root, count):
    from luigi_kubeface.storage import open_storage

    storage = open_storage(_job_url(root))
    while len(storage.list("results/")) < count:
        time.sleep(1)


def _wait_for_line(path, pattern, after, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            for line in f:
                if pattern.search(line):
                    stamp = _log_time(line)
                    if stamp is not None and stamp >= time.time() - (time.monotonic() - after):
                        return time.monotonic() - (time.time() - stamp)
        time.sleep(0.2)
    return None


def _log_time(line):
    match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
    if not match:
        return None
    return time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) + int(match.group(2)) / 1000


def _elements_run_twice(root):
    from luigi_kubeface.storage import open_storage

    storage = open_storage(_job_url(root))
    succeeded = {}
    for key in storage.list("attempts/"):
        record = json.loads(storage.read(key))
        if record.get("outcome") == "success":
            succeeded[record["element"]] = succeeded.get(record["element"], 0) + 1
    return sum(1 for count in succeeded.values() if count > 1)


def _render_seconds(root):
    from luigi_kubeface.views import status_page
    from luigi_kubeface.views.job_state import JobState
    from luigi_kubeface.bucket.catalog import open_job

    started = time.perf_counter()  # what the status page's writer does: read the job's records, then render
    state = JobState(open_job(_job_url(root)))
    state.refresh()
    status_page.render(state)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--max-in-flight", type=int, default=200)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--restart-at", type=float, default=0.0, help="also run each size with a master SIGKILLed")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--profile", action="store_true", help="the master's cProfile, in its log")
    parser.add_argument(
        "--via",
        choices=["luigi", "client"],
        default="luigi",
        help="ours through `luigi` and a fresh luigid (default), or Client.map",
    )
    args = parser.parse_args()
    args.workdir = Path(tempfile.mkdtemp(prefix="bench-kwok-"))
    (args.workdir / "keys").mkdir(mode=0o700)
    kwok_dir = build_kwok()
    cp = start_control_plane(args.workdir)
    gcs = FakeGCS(str(args.workdir / "gcs"), host="127.0.0.1").start()
    os.environ["STORAGE_EMULATOR_HOST"], os.environ["GOOGLE_CLOUD_PROJECT"] = gcs.url, "test"
    kwok = start_kwok(cp, args.workdir, kwok_dir)
    try:
        from kubernetes import client

        api = client.ApiClient(admin_configuration(cp))
        kube, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        create_nodes(kube, args.nodes)
        print(
            "control plane, kwok %s with %d nodes, fake-gcs-server: up (work folder %s)"
            % (kwok_dir.name, args.nodes, args.workdir),
            flush=True,
        )
        limits_ns = "limits-%s" % uuid.uuid4().hex[:6]
        kube.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": limits_ns}})
        limits = [] if args.skip_peer else probe_peer_limits(batch, limits_ns)
        rows = []
        for n in [int(s) for s in args.sizes.split(",")]:
            ours = run_ours(cp, gcs, kube, args, n)
            print("ours %d: %s" % (n, json.dumps(ours)), flush=True)
            restarted = run_ours(cp, gcs, kube, args, n, restart_at=args.restart_at) if args.restart_at else None
            if restarted:
                print(
                    "ours %d, master killed at %d%%: %s" % (n, args.restart_at * 100, json.dumps(restarted)), flush=True
                )
            peer = None if args.skip_peer else run_peer(cp, kube, batch, args, n)
            if peer:
                print("peer %d: %s" % (n, json.dumps(peer)), flush=True)
            rows.append((n, ours, restarted, peer))
        print_table(rows, args)
        for what, verdict in limits:
            print("Indexed Job (backoffLimitPerIndex 1), %s: %s" % (what, verdict))
    finally:
        kwok.stop()
        gcs.stop()
        cp.stop()


def print_table(rows, args):
    print("\nmax_in_flight %d, pod delay %gs, %d kwok nodes\n" % (args.max_in_flight, args.delay, args.nodes))
    print(
        "| elements | ours makespan s | ideal s | ours / ideal | master peak RSS MB | master CPU s | API requests "
        "per pod (ours) | status page read + render s | Indexed Job s | Job / ideal | job-controller requests per pod |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, ours, _, peer in rows:
        print(
            "| %s | %.1f | %.1f | %.3f | %.0f | %.1f | %.2f | %.2f | %s | %s | %s |"
            % (
                format(n, ","),
                ours["makespan"],
                ours["ideal"],
                ours["makespan"] / ours["ideal"],
                ours["rss_mb"],
                ours["cpu_s"],
                ours["per_pod"],
                ours["render_s"],
                "%.1f" % peer["makespan"] if peer else "-",
                "%.3f" % (peer["makespan"] / peer["ideal"]) if peer else "-",
                "%.2f" % peer["per_pod"] if peer else "-",
            )
        )
    for n, ours, restarted, _ in rows:
        print("requests of ours at %d by kind: %s" % (n, ours["requests"]))
        print("what luigid shows of the job at %d: %r" % (n, ours["luigid_shows"]))
        watch = ours["watch"] or {}
        print(
            "the master's pod watch at %d: %s lists (%s relists), %s watches opened, %s 410 Gone, %s interrupted; "
            "events %s"
            % (
                n,
                watch.get("lists"),
                watch.get("relists"),
                watch.get("watches"),
                watch.get("gone"),
                watch.get("interrupted"),
                watch.get("events"),
            )
        )
        if restarted:
            print(
                "master SIGKILLed at %d%% of %d: adopted its pods %s s after its restart; elements run twice: %d; "
                "makespan %.1f s"
                % (
                    args.restart_at * 100,
                    n,
                    "%.1f" % restarted["adopted_after"]
                    if restarted["adopted_after"] is not None
                    else "(not seen in its log)",
                    restarted["run_twice"],
                    restarted["makespan"],
                )
            )


if __name__ == "__main__":
    main()
