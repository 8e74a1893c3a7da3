"""Speculation on a virtual clock: a straggler gets one backup, the first result wins, the loser is cancelled."""

import json

import pytest

from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.backends.simulated import SimulatedBackend
from luigi_kubeface.master.engine import run_job
from luigi_kubeface.job.definition import Job, elements_from_items
from luigi_kubeface.settings import Settings
from elements import square


def durations(slow):
    """Attempt durations in virtual seconds: 1 for most, slow[(item, attempt number)] for the listed ones."""

    def duration(spec):
        return slow.get((spec.label, int(spec.attempt[:3])), 1.0)

    return duration


def run(tmp_path, slow, speculation=True, n=12, min_done=0.5):
    settings = Settings(
        storage_root=str(tmp_path),
        max_in_flight=4,
        retries=0,
        poll_interval=0.1,
        speculation=speculation,
        speculation_min_done=min_done,
        speculation_multiple=3,
    )
    job = Job("squares", settings.storage_root, square, elements_from_items(range(n)))
    job.prepare()
    backend = SimulatedBackend(settings, durations(slow))
    report = run_job(job, backend, settings, clock=backend.clock, sleep=backend.sleep)
    return job, backend, report


def launches_of(backend, label):
    return [spec.attempt for spec in backend.launched if spec.label == label]


def check_every_result_once(job, n):
    keys = [e.key for e in job.elements]
    assert job.store.finished() == set(keys)
    assert len(job.store.storage.list(naming.RESULTS_PREFIX)) == n
    assert [job.store.load_result(k) for k in keys] == [x * x for x in range(n)]


def test_backup_of_a_straggler_wins_and_the_straggler_is_cancelled(tmp_path):
    job, backend, report = run(tmp_path, {("11", 1): 1000.0})  # the last element's first attempt hangs
    assert report.progress.succeeded == 12 and report.progress.failed == 0 and not report.stopped
    assert report.progress.speculated == 1
    straggler, backup = launches_of(backend, "11")
    assert backend.cancelled == [straggler]
    key = job.elements[11].key
    assert job.store.attempt_record(key, straggler)["outcome"] == "cancelled"
    assert job.store.attempt_record(key, backup)["outcome"] == "success"
    assert all(len(launches_of(backend, str(x))) == 1 for x in range(11))
    assert backend.now < 1000.0  # the job did not wait for the straggler
    check_every_result_once(job, 12)


def test_original_that_finishes_first_wins_and_its_backup_is_cancelled(tmp_path):
    job, backend, report = run(tmp_path, {("11", 1): 5.0, ("11", 2): 1000.0})
    assert report.progress.speculated == 1 and report.progress.succeeded == 12
    original, backup = launches_of(backend, "11")
    assert backend.cancelled == [backup]
    key = job.elements[11].key
    assert job.store.attempt_record(key, original)["result_written"] is True
    assert job.store.attempt_record(key, backup)["outcome"] == "cancelled"
    check_every_result_once(job, 12)


def test_without_speculation_the_straggler_runs_to_its_end(tmp_path):
    job, backend, report = run(tmp_path, {("11", 1): 50.0}, speculation=False)
    assert report.progress.speculated == 0 and backend.cancelled == []
    assert len(backend.launched) == 12
    assert backend.now >= 50.0
    check_every_result_once(job, 12)


def test_no_backup_before_the_share_of_elements_is_done(tmp_path):
    # With min_done = 1, the median is never trusted while anything still runs: no backup.
    job, backend, report = run(tmp_path, {("0", 1): 50.0}, min_done=1.0)
    assert report.progress.speculated == 0 and len(backend.launched) == 12
    check_every_result_once(job, 12)


@pytest.mark.parametrize("name, value", [("speculation_min_done", 0.0), ("speculation_multiple", 0.5)])
def test_speculation_settings_are_range_checked(tmp_path, name, value):
    from luigi_kubeface.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=name):
        Settings(storage_root=str(tmp_path), **{name: value})


def test_cancelled_record_is_json(tmp_path):
    job, backend, report = run(tmp_path, {("3", 1): 1000.0})
    (cancelled,) = backend.cancelled
    raw = job.store.storage.read(naming.attempt_record_key(job.elements[3].key, cancelled))
    assert json.loads(raw)["message"] == "another attempt of this element finished first"


def test_every_element_runs_once_even_when_attempt_ids_clash(tmp_path, monkeypatch):
    # Attempt ids carry a short random suffix: thousands launched in one second can draw the same
    # id for two elements. The engine must not lose either element.
    ids = iter(["001-1-aaaaaa", "001-1-aaaaaa", "001-1-bbbbbb", "001-1-cccccc", "001-1-cccccc", "001-1-dddddd"])
    monkeypatch.setattr(naming, "new_attempt_id", lambda number: next(ids))
    job, backend, report = run(tmp_path, {}, n=4)
    assert report.progress.succeeded == 4
    assert sorted(s.attempt for s in backend.launched) == [
        "001-1-aaaaaa",
        "001-1-bbbbbb",
        "001-1-cccccc",
        "001-1-dddddd",
    ]
    check_every_result_once(job, 4)


def test_in_process_attempts_leave_sys_path_as_they_found_it(tmp_path):
    """Each attempt puts the job's code first on sys.path; thousands in one process must not pile up
    (every import and metadata lookup scans the whole path: 50 ms per element at 2,000 elements)."""
    import sys

    before, finders = list(sys.path), set(sys.path_importer_cache)
    run(tmp_path, {}, speculation=False, n=20)
    assert sys.path == before
    assert not [p for p in set(sys.path_importer_cache) - finders if "kubeface-code-" in p]  # nor their finders
