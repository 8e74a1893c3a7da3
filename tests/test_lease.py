"""One master per job: the lease in storage, and two real `luigi` commands started together on one job."""

import glob
import json
import os
import subprocess
import sys
import time

import pytest

from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.cli import main
from luigi_kubeface.master.lease import JobLease, describe, lapsed, read_lease
from luigi_kubeface.storage import open_storage
from support import REPO, TESTS, read_json


def test_one_holder_at_a_time_and_a_released_lease_is_taken_at_once(storage):
    first, second = JobLease(storage, 30, "run-a"), JobLease(storage, 30, "run-b")
    assert first.acquire() is False  # did not wait
    holder = second.try_acquire()
    assert holder["run"] == "run-a" and holder["pid"] == os.getpid() and not lapsed(holder)
    assert "held by run run-a" in describe(holder)
    first.release()
    assert second.try_acquire() is None
    holder, _ = read_lease(storage)
    assert holder["run"] == "run-b" and "released" not in holder
    second.release()
    assert lapsed(read_lease(storage)[0]) == "released"


def test_a_lease_not_renewed_is_taken_over_and_its_holder_learns_it(storage):
    crashed = JobLease(storage, 0.6, "run-a")
    crashed.acquire()
    crashed._stop.set()  # its heartbeat stops, as when the master hangs or its machine is gone
    crashed._thread.join()
    waiter = JobLease(storage, 0.6, "run-b")
    assert waiter.try_acquire()["run"] == "run-a"  # still live
    looks = []
    assert waiter.acquire(on_wait=looks.append, sleep=time.sleep) is True
    assert looks and read_lease(storage)[0]["run"] == "run-b"
    crashed.renew()
    assert "another master took the job over" in crashed.lost and "run-b" in crashed.lost
    crashed.release()  # a lost lease is not released over its new holder
    assert read_lease(storage)[0]["run"] == "run-b" and not lapsed(read_lease(storage)[0])
    waiter.release()


def test_the_heartbeat_keeps_the_lease(tmp_path):
    storage = open_storage(str(tmp_path / "job"))
    holder = JobLease(storage, 0.6, "run-a")
    holder.acquire()
    time.sleep(2.0)  # several lease periods
    assert not lapsed(read_lease(storage)[0]) and not holder.lost
    assert JobLease(storage, 0.6, "run-b").try_acquire()["run"] == "run-a"
    holder.release()


def _luigi(root, tmp_path, *flags):
    env = dict(
        os.environ,
        LUIGI_CONFIG_PATH=os.path.join(REPO, "luigi.cfg"),
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
            "8",
            "--mode",
            "sleep",
            "--bad",
            "[0,1,2,3,4,5,6,7]",
            "--seconds",
            "1",
            "--local-scheduler",
            "--kubeface-storage-root",
            root,
            "--kubeface-max-in-flight",
            "2",
            "--kubeface-poll-interval",
            "0.1",
            "--kubeface-lease-seconds",
            "3",
            "--no-lock",
        ]
        + list(flags),  # luigi's own lock holds only on one machine
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kubeface(*argv):
    import io

    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.mark.slow
def test_two_masters_started_together_run_each_element_once(tmp_path):
    root = str(tmp_path / "storage")
    masters = [_luigi(root, tmp_path), _luigi(root, tmp_path)]
    status = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "lease: held by" not in status:
        jobs = glob.glob(os.path.join(root, "*", naming.LEASE))
        if jobs:
            status = _kubeface("status", os.path.dirname(jobs[0]))[1]
        time.sleep(0.2)
    outputs = [m.communicate(timeout=300)[0] for m in masters]
    assert [m.returncode for m in masters] == [0, 0], outputs
    assert "lease: held by run " in status and "since " in status, status
    (job_dir,) = glob.glob(os.path.join(root, "*Squares*"))
    records = glob.glob(os.path.join(job_dir, "attempts", "*", "*.json"))
    assert len(records) == 8, records  # not 16: the second master waited and reused the first one's results
    assert sum("waiting for it" in out for out in outputs) == 1, outputs
    holder = read_json(os.path.join(job_dir, naming.LEASE))
    assert holder["released"]
    assert "lease: free: last held by" in _kubeface("status", job_dir)[1]


def test_cleanup_refuses_a_job_whose_lease_is_live_unless_forced(tmp_path, capsys):
    root = str(tmp_path / "storage")
    storage = open_storage(os.path.join(root, "job-1"))
    storage.write(naming.JOB_META, json.dumps({"backend": "local", "updated": time.time()}).encode())
    storage.write("results/%s.pkl" % ("a" * 24), b"x")
    lease = JobLease(storage, 30, "run-a")
    lease.acquire()
    code, _ = _kubeface("cleanup", "job-1", "--storage-root", root, "--blobs", "--yes")
    assert code != 0 and "job job-1 is running" in capsys.readouterr().err
    assert storage.exists("results/%s.pkl" % ("a" * 24))
    code, out = _kubeface("cleanup", "job-1", "--storage-root", root, "--blobs", "--yes", "--force")
    assert code == 0 and not storage.exists("results/%s.pkl" % ("a" * 24)), out
    lease.release()


def test_a_cancellation_written_by_another_master_is_not_the_elements_failure(tmp_path):
    from luigi_kubeface.backends import AttemptEnd
    from luigi_kubeface.backends.simulated import SimulatedBackend
    from luigi_kubeface.master.engine import run_job
    from luigi_kubeface.job.definition import Job, elements_from_items
    from luigi_kubeface.bucket.signing import KeyRing
    from luigi_kubeface.settings import Settings

    settings = Settings(storage_root=str(tmp_path / "s"), key_dir=str(tmp_path / "keys"), retries=0)
    job = Job("adopted", settings.storage_root, abs, elements_from_items([-1, -2]), keys=KeyRing(settings.key_dir))
    job.prepare()
    adopted = "001-1-aaaaaaaaaaaa"

    class Adopting(SimulatedBackend):
        """Follows a pod an earlier master left, which that master then deletes and records cancelled."""

        def adopt(self, job):
            job.store.write_input(job.elements[0], job.shared_keys, job.code_version)  # as the earlier master did
            return {job.elements[0].key: adopted}

        def poll(self):
            if adopted not in self.cancelled and not getattr(self, "told", False):
                self.told = True
                job.store.write_attempt_record(
                    job.elements[0].key,
                    adopted,
                    {
                        "outcome": "cancelled",
                        "error_type": "Cancelled",
                        "message": "the master stopped",
                        "recorded_by": "master",
                    },
                )
                return [
                    AttemptEnd(adopted, None, reason="the pod was deleted", error_type="PodDeleted", interrupted=True)
                ]
            return super().poll()

    backend = Adopting(settings)
    report = run_job(job, backend, settings, clock=backend.clock, sleep=backend.sleep)
    assert not report.failures and report.progress.succeeded == 2, report.failures


def _hold_flock(path):
    """Another process holding flock(LOCK_EX) on path until killed (what any local user can do to a 0755 dir)."""
    code = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_lock_held_on_the_job_directory_does_not_hang_the_master(tmp_path):
    """Hardening (issue 25): job directories are 0755, so any local user could flock one and hang every lease read."""
    import threading

    storage = open_storage(str(tmp_path / "job"))
    JobLease(storage, 30, "run-a").acquire()
    (tmp_path / "job").chmod(0o755)
    holder = _hold_flock(tmp_path / "job")
    try:
        done = []
        lease = JobLease(storage, 30, "run-b")
        thread = threading.Thread(target=lambda: done.append(lease.try_acquire()), daemon=True)
        thread.start()
        thread.join(120)  # a hang detector, not a timing: with the directory locked it never returned
        assert done and done[0]["run"] == "run-a"
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipe
    assert os.stat(tmp_path / "job" / naming.LEASE).st_mode & 0o777 == 0o600  # only its owner can open, so lock, it


def test_a_lock_held_on_the_lease_itself_is_an_error_after_a_bound_not_a_hang(tmp_path):
    from luigi_kubeface.errors import StorageError

    storage = open_storage(str(tmp_path / "job"))
    lease = JobLease(storage, 30, "run-a")
    lease.acquire()
    holder = _hold_flock(tmp_path / "job" / naming.LEASE)
    storage.lock_wait = 0.3
    try:
        _, generation = read_lease(storage)
        with pytest.raises(StorageError, match="stayed locked by another process"):
            storage.write_if_generation(naming.LEASE, b"{}", generation)
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipe
    lease.release()


KEY = b"k" * 32


def _forge(storage, record):
    storage.write(naming.LEASE, json.dumps(record).encode())  # a bucket writer: no compare-and-swap, no key


def test_a_forged_lease_does_not_stop_the_running_master_nor_stall_a_waiting_one(tmp_path):
    """Hardening (issue 25): a forged lease.json stopped a running job at its next heartbeat."""
    storage = open_storage(str(tmp_path / "job"))
    running = JobLease(storage, 30, "run-a", key=KEY)
    running.acquire()
    genuine = read_lease(storage)[0]
    _forge(storage, dict(genuine, run="run-evil", term=10**12, hmac="0" * 64))  # unsigned, a huge term
    running.renew()
    assert not running.lost and read_lease(storage)[0]["run"] == "run-a"  # put back
    storage.delete(naming.LEASE)
    running.renew()
    assert not running.lost and read_lease(storage)[0]["run"] == "run-a"
    running.release()
    old_released = read_lease(storage)[0]  # a genuine record, signed: released
    again = JobLease(storage, 30, "run-c", key=KEY)
    again.acquire()
    _forge(storage, old_released)  # an older signed record copied back
    again.renew()
    assert not again.lost and read_lease(storage)[0]["run"] == "run-c"
    again.release()
    _forge(storage, dict(genuine, run="run-evil", renewed=time.time() + 10**6))  # "held" for ever, unsigned
    waiting = JobLease(storage, 30, "run-d", key=KEY)
    assert waiting.try_acquire() is None  # not signed: no master's; taken at once
    taker = JobLease(storage, 0.5, "run-e", key=KEY)  # a genuine takeover still stops the holder
    waiting._stop.set()
    waiting._thread = None
    assert taker.acquire(sleep=time.sleep) is True
    waiting.renew()
    assert "another master took the job over" in waiting.lost
    taker.release()
