"""Faults in the middle of a job: nothing lost, nothing hangs. (Kubernetes faults live in tests/backends/.)"""

import threading
import time

import pytest

from luigi_kubeface import Client
from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.storage import open_storage
from support import process_argvs

OUTAGE = 30.0
DEADLINE = 240.0  # the whole test, outage included; a hang fails the test instead of blocking CI


def slow_square(x):
    time.sleep(1.0)
    return x * x


def runner_processes(job_url):
    """Runner processes of this job still alive (the local backend's 'pods')."""
    return [pid for pid, argv in process_argvs() if b"luigi_kubeface.runner" in argv and job_url.encode() in argv]


@pytest.mark.slow
def test_storage_outage_mid_job_loses_nothing(own_gcs, tmp_path):
    root = "gs://outage/jobs"
    items = list(range(12))
    client = Client(
        storage_root=root,
        key_dir=str(tmp_path / "keys"),
        max_in_flight=3,
        retries=2,
        poll_interval=0.1,
        retry_backoff=0.5,
        storage_retry_deadline=120,
    )
    outcome = {}

    def run():
        try:
            outcome["results"] = list(client.map(slow_square, items, job_id="outage"))
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            outcome["error"] = error
        outcome["finished"] = time.monotonic()

    started = time.monotonic()
    master = threading.Thread(target=run, daemon=True)
    master.start()
    storage = open_storage(root + "/outage", retry_deadline=60)
    while len(storage.list(naming.RESULTS_PREFIX)) < 2 and master.is_alive():
        time.sleep(0.2)  # stop the bucket once the job is well under way
    done_before = len(storage.list(naming.RESULTS_PREFIX))
    own_gcs.stop()
    stopped = time.monotonic()
    time.sleep(OUTAGE)
    own_gcs.start()
    restarted = time.monotonic()
    at_restart, first_new = len(storage.list(naming.RESULTS_PREFIX)), None
    while master.is_alive() and time.monotonic() - started < DEADLINE:
        if first_new is None and len(storage.list(naming.RESULTS_PREFIX)) > at_restart:
            first_new = time.monotonic()
        master.join(timeout=0.5)
    assert not master.is_alive(), "the job did not finish within %.0fs of its start" % DEADLINE
    assert "error" not in outcome, outcome.get("error")

    assert outcome["results"] == [x * x for x in items]
    keys = storage.list(naming.RESULTS_PREFIX)
    assert len(keys) == len(set(keys)) == len(items)  # every result once
    assert not storage.list(naming.QUARANTINE_PREFIX)  # and every one intact (loaded above, verified)
    assert not runner_processes(storage.url.rstrip("/"))
    attempts = storage.list(naming.ATTEMPTS_PREFIX)
    print(
        "\noutage: %d of %d results before the stop, %d at the restart; bucket down %.1fs; first new result "
        "%.1fs and job end %.1fs after the restart; %d attempts for %d elements"
        % (
            done_before,
            len(items),
            at_restart,
            restarted - stopped,
            (first_new or outcome["finished"]) - restarted,
            outcome["finished"] - restarted,
            len(attempts),
            len(items),
        )
    )
