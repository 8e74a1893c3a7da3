"""Element processes die with their master, whatever kills it, and a rerun never duplicates their work."""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from luigi_kubeface.backends.local import sweep_stale_dirs
from support import REPO, TESTS, read_json


def _master(root, tmp, n, seconds, *more):
    """The real `luigi` command in a session of its own, as a terminal runs it (SIGINT at its default)."""
    env = dict(
        os.environ,
        LUIGI_CONFIG_PATH=os.path.join(REPO, "luigi.cfg"),
        TMPDIR=tmp,
        PYTHONPATH=os.pathsep.join([TESTS, REPO, os.environ.get("PYTHONPATH", "")]),
    )
    luigi = os.path.join(os.path.dirname(sys.executable), "luigi")
    return subprocess.Popen(
        [
            luigi,
            "--module",
            "pipelines.toy",
            "Squares",
            "--n",
            str(n),
            "--mode",
            "child",
            "--bad",
            json.dumps(list(range(n))),
            "--seconds",
            str(seconds),
            "--local-scheduler",
            "--kubeface-storage-root",
            root,
            "--kubeface-max-in-flight",
            "4",
            "--kubeface-local-max-processes",
            "4",
            "--kubeface-poll-interval",
            "0.1",
            "--kubeface-lease-seconds",
            "2",
            "--no-lock",
        ]
        + list(more),
        cwd=os.path.dirname(root),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _left_over(tmp):
    """Processes started for this test's attempts: their TMPDIR is under tmp (runners and the elements' children)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:
                continue
            if any(v.startswith(b"TMPDIR=" + tmp.encode() + b"/kubeface-local-") for v in environ):
                found.append(int(name))
    return found


def _wait_until_gone(tmp, timeout=10.0):
    deadline = time.monotonic() + timeout
    while _left_over(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _left_over(tmp)


def test_runners_die_when_their_master_is_killed(tmp_path):
    root, tmp = str(tmp_path / "storage"), str(tmp_path / "tmp")
    os.makedirs(tmp)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        master = _master(root, tmp, 4, 60)
        deadline = time.monotonic() + 60
        while len(_left_over(tmp)) < 8 and time.monotonic() < deadline:  # 4 runners, each with its `sleep`
            time.sleep(0.1)
        assert len(_left_over(tmp)) >= 8
        master.send_signal(sig)
        master.communicate(timeout=30)
        assert _wait_until_gone(tmp) == [], "runners outlived a master killed by %s" % sig.name
    left = glob.glob(os.path.join(tmp, "kubeface-local-*"))
    assert len(left) == 1  # the second master swept the first one's directory; the next one sweeps its
    assert sweep_stale_dirs(tmp) == left and not os.listdir(tmp)


def test_the_sweep_kills_runners_a_dead_master_left_and_spares_live_masters(tmp_path):
    tmp = str(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a runner whose watch never fired
    stale = os.path.join(tmp, "kubeface-local-%d-abc" % dead.pid)
    live = os.path.join(tmp, "kubeface-local-%d-def" % os.getpid())
    for path, pid in ((stale, dead.pid), (live, os.getpid())):
        os.mkdir(path)
        with open(os.path.join(path, "master"), "w") as f:
            f.write("%d %d\n" % (pid, _start(pid) if pid == os.getpid() else 1))
    with open(os.path.join(stale, "runners"), "w") as f:
        f.write("%d %d\n" % (orphan.pid, _start(orphan.pid)))
    # Killed between creating its directory and recording itself: swept when its pid is gone.
    unrecorded = os.path.join(tmp, "kubeface-local-%d-ghi" % dead.pid)
    recording = os.path.join(tmp, "kubeface-local-%d-jkl" % os.getpid())
    os.mkdir(unrecorded)
    os.mkdir(recording)
    assert sorted(sweep_stale_dirs(tmp)) == sorted([stale, unrecorded])
    assert orphan.wait(timeout=10) == -signal.SIGKILL
    assert sorted(os.listdir(tmp)) == sorted([os.path.basename(live), os.path.basename(recording)])


def _start(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


@pytest.mark.slow
def test_a_master_killed_five_times_leaves_every_result_once_and_nothing_running(tmp_path):
    root, tmp = str(tmp_path / "storage"), str(tmp_path / "tmp")
    os.makedirs(tmp)
    killed = []
    rng = random.Random()
    for _ in range(5):
        master = _master(root, tmp, 40, 0.4)
        time.sleep(rng.uniform(1.0, 5.0))  # before, during or after launching: wherever it falls
        master.kill()
        master.communicate(timeout=30)
        killed.append(master.pid)
        assert _wait_until_gone(tmp) == []
    final = _master(root, tmp, 40, 0.4)
    out = final.communicate(timeout=600)[0]
    assert final.returncode == 0, out[-3000:]
    assert _left_over(tmp) == []
    (job,) = glob.glob(os.path.join(root, "*Squares*"))
    results = os.listdir(os.path.join(job, "results"))
    assert len(results) == 40 and len({r.split(".")[0] for r in results}) == 40
    for element in os.listdir(os.path.join(job, "attempts")):
        outcomes = [read_json(p).get("outcome") for p in glob.glob(os.path.join(job, "attempts", element, "*"))]
        assert outcomes.count("success") == 1, (element, outcomes)
    # A master that had nothing left to run opened no backend and swept nothing: what the killed
    # masters left must still be removable by the next one that does.
    left = [
        os.path.join(tmp, d) for d in os.listdir(tmp) if any(d.startswith("kubeface-local-%d-" % pid) for pid in killed)
    ]
    assert sorted(sweep_stale_dirs(tmp)) == sorted(left)
    assert not [d for d in os.listdir(tmp) if any(d.startswith("kubeface-local-%d-" % pid) for pid in killed)]


def test_a_master_stopped_on_the_way_out_never_replaces_the_runners_record(tmp_path):
    """The runner wrote success, the master had not seen the attempt end yet: its `cancelled` must not win."""
    from luigi_kubeface.bucket import layout as naming
    from luigi_kubeface.backends.local import LocalBackend
    from luigi_kubeface.master.engine import run_job
    from luigi_kubeface.job.definition import Job, elements_from_items
    from luigi_kubeface.bucket.signing import KeyRing
    from luigi_kubeface.settings import Settings

    settings = Settings(storage_root=str(tmp_path / "s"), key_dir=str(tmp_path / "keys"), lease_seconds=5)
    job = Job("records", settings.storage_root, abs, elements_from_items([-3]), keys=KeyRing(settings.key_dir))
    job.prepare()
    (element,) = job.elements

    class Unseeing(LocalBackend):
        """Reports no end, and the user presses Ctrl-C once the runner wrote its record."""

        def poll(self):
            return []

        def wait(self, timeout):
            time.sleep(timeout)
            if job.store.storage.list(naming.attempts_prefix(element.key)):
                raise KeyboardInterrupt

    backend = Unseeing(settings)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_job(job, backend, settings)
    finally:
        backend.close()
    (attempt,) = job.store.attempts(element.key)
    record = job.store.attempt_record(element.key, attempt)
    assert record["outcome"] == "success" and "recorded_by" not in record and record["host"]


def _luigi_processes(tmp):
    """The `luigi` command and the workers it forked (their TMPDIR is tmp itself)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:
                continue
            if b"TMPDIR=" + tmp.encode() in environ:
                found.append(int(name))
    return found


def _wait_for_runners(tmp, count):
    deadline = time.monotonic() + 60
    while len(_left_over(tmp)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_left_over(tmp)) >= count


def _stopped_cleanly(root):
    """What a run stopped by Ctrl-C leaves: lease released, its summary, its attempts recorded, final progress."""
    (job,) = glob.glob(os.path.join(root, "*Squares*"))
    assert read_json(os.path.join(job, "lease.json")).get("released"), "the lease was not released"
    (summary,) = [read_json(p) for p in glob.glob(os.path.join(job, "dispatches", "*.json"))]
    assert summary["stopped"].startswith("interrupted: the master received SIG"), summary
    records = [read_json(p) for p in glob.glob(os.path.join(job, "attempts", "*", "*.json"))]
    assert len(records) == 4 and {r["outcome"] for r in records} == {"cancelled"}, records
    assert all("interrupted: the master received" in r["message"] for r in records), records
    progress = read_json(os.path.join(job, "progress.json"))
    assert progress["final"] and not progress.get("running"), progress
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("workers,how", [("1", "SIGTERM"), ("2", "SIGTERM"), ("2", "Ctrl-C")])
def test_sigterm_or_ctrl_c_ends_a_run_cleaned_up(tmp_path, workers, how):
    root, tmp = str(tmp_path / "storage"), str(tmp_path / "tmp")
    os.makedirs(tmp)
    master = _master(root, tmp, 4, 120, "--workers", workers)
    _wait_for_runners(tmp, 8)  # 4 runners, each with its `sleep`
    if how == "Ctrl-C":  # a terminal sends SIGINT to the whole foreground group: luigi and its workers
        os.killpg(master.pid, signal.SIGINT)
    else:
        master.send_signal(signal.SIGTERM)
    output = master.communicate(timeout=120)[0]
    assert _wait_until_gone(tmp) == [], output[-3000:]
    assert _luigi_processes(tmp) == [], "a forked worker outlived luigi"
    _stopped_cleanly(root)


@pytest.mark.slow
def test_a_forked_worker_dies_with_its_luigi_killed_by_sigkill(tmp_path):
    root, tmp = str(tmp_path / "storage"), str(tmp_path / "tmp")
    os.makedirs(tmp)
    master = _master(root, tmp, 4, 120, "--workers", "2")
    _wait_for_runners(tmp, 8)
    master.kill()
    master.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while _luigi_processes(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _luigi_processes(tmp) == [], "the forked worker outlived its luigi and runs the job"
    assert _wait_until_gone(tmp) == []
    assert "SIGTERM" in _stopped_cleanly(root)["stopped"]  # it stopped as for Ctrl-C


_MASTER_STOPS_WHILE_THE_RESULT_IS_WRITTEN = r"""
import os, signal, sys, time
from luigi_kubeface.client import Client

class SignalsTheMasterWhenPickled:
    '''Its result's pickling signals the master (the runner's parent) and waits for what follows.'''
    def __init__(self, sig):
        self.sig = sig

    def __reduce__(self):
        if not os.environ.get("SIGNALLED"):
            os.environ["SIGNALLED"] = "1"
            os.kill(os.getppid(), self.sig)
            time.sleep(2)  # the master is gone or cancelling: without the grace, the runner dies here
        return (int, (7,))

def element(sig):
    return SignalsTheMasterWhenPickled(sig)

list(Client(storage_root=sys.argv[1], poll_interval=0.1).map(element, [int(sys.argv[2])], job_id="stops"))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_a_master_stopped_after_the_element_returned_still_gets_its_result_and_success_record(tmp_path, sig):
    """Killed (the runner follows its master) or cancelling on Ctrl-C (SIGTERM, then SIGKILL after a grace),
    the runner finishes the result and its record first: a rerun would skip the result, so the record
    (and the summary in it) would be lost for good."""
    root, tmp = str(tmp_path / "storage"), str(tmp_path / "tmp")
    os.makedirs(tmp)
    master = subprocess.run(
        [sys.executable, "-c", _MASTER_STOPS_WHILE_THE_RESULT_IS_WRITTEN, root, str(int(sig))],
        env=dict(os.environ, TMPDIR=tmp),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert master.returncode != 0, master.stderr[-3000:]
    assert _wait_until_gone(tmp, timeout=30) == []
    (job,) = glob.glob(os.path.join(root, "stops*"))
    assert len(os.listdir(os.path.join(job, "results"))) == 1, master.stderr[-3000:]
    (record,) = [read_json(p) for p in glob.glob(os.path.join(job, "attempts", "*", "*.json"))]
    assert record["outcome"] == "success" and record["result_written"], record
