"""Every way an attempt can end, scripted on the simulated backend: what the engine decides and records.

One row per branch of the engine's decision table (success, refused result, interruption, cancelled
by another master, timeout, runner records, the backend's own errors, exit 0 without a result, a
lost attempt), then the job-wide rules: failure budget, all failed, speculation, shutdown, adoption.
"""

import pytest

from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.backends import AttemptSpec
from luigi_kubeface.backends.simulated import (
    End,
    Hang,
    Run,
    SimulatedBackend,
    cancelled_by_master,
    error_record,
    success_record,
    unusable_record,
)
from luigi_kubeface.master.engine import run_job
from luigi_kubeface.master.judge import ALL_FAILED_STOP, MAX_INTERRUPTIONS
from luigi_kubeface.job.definition import Job, elements_from_items
from luigi_kubeface.settings import Settings
from elements import square


def run(tmp_path, script=None, n=1, duration=None, adopted=(), leaves=False, on_progress=None, **overrides):
    """Run a job of n elements (items 0..n-1); script: {(item, attempt number): Run/End/Hang} or a function."""
    options = dict(
        storage_root=str(tmp_path / "storage"),
        max_in_flight=4,
        retries=0,
        retry_backoff=1.0,
        poll_interval=0.1,
        failure_budget=1.0,
    )
    options.update(overrides)
    settings = Settings(**options)
    job = Job("table", settings.storage_root, square, elements_from_items(range(n)))
    job.prepare()
    table = dict(script or {}) if not callable(script) else None

    def scripted(spec, number):
        if table is None:
            return script(spec, number)
        return table.get((int(spec.label) if spec.label.isdigit() else spec.label, number))

    backend = SimulatedBackend(
        settings,
        duration,
        scripted,
        adopted=adopted(job) if callable(adopted) else adopted,
        leaves_attempts_running=leaves,
    )
    report = run_job(job, backend, settings, on_progress=on_progress, clock=backend.clock, sleep=backend.sleep)
    return job, backend, report


def records(job, item=0):
    """(outcome, who wrote it, error_type) of each attempt of the item's element, oldest first."""
    key = job.elements[item].key
    found = [job.store.attempt_record(key, attempt) for attempt in job.store.attempts(key)]
    return [(r["outcome"], r.get("recorded_by", "runner"), r.get("error_type", "")) for r in found]


def counts(report):
    p = report.progress
    return p.succeeded, p.failed, p.retried


def failure(report, job, item=0):
    return report.failures[job.elements[item].key]


# --- one element, one row per way an attempt ends -------------------------------------------------

ENDS = {  # name: (script, settings, (succeeded, failed, retried), records, failure error_type or None)
    "success": ({}, {}, (1, 0, 0), [("success", "runner", "")], None),
    "corrupt result refused, retried": (
        {(0, 1): Run(corrupt_result=True)},
        {"retries": 1},
        (1, 0, 1),
        [("result_refused", "master", "CorruptBlobError"), ("success", "runner", "")],
        None,
    ),
    "corrupt result refused, no retries left": (
        {(0, 1): Run(corrupt_result=True)},
        {},
        (0, 1, 0),
        [("result_refused", "master", "CorruptBlobError")],
        "CorruptBlobError",
    ),
    "interrupted: run again at once, not a retry": (
        {(0, n): End(None, "evicted", error_type="Evicted", interrupted=True) for n in range(1, MAX_INTERRUPTIONS + 1)},
        {},
        (1, 0, 0),
        [("interrupted", "master", "Evicted")] * MAX_INTERRUPTIONS + [("success", "runner", "")],
        None,
    ),
    "interrupted without a type": (
        {(0, 1): End(None, "node lost", interrupted=True)},
        {},
        (1, 0, 0),
        [("interrupted", "master", "Interrupted"), ("success", "runner", "")],
        None,
    ),
    "interrupted over MAX_INTERRUPTIONS": (
        {(0, n): End(None, "evicted", error_type="Evicted", interrupted=True) for n in range(1, MAX_INTERRUPTIONS + 2)},
        {},
        (0, 1, 0),
        [("interrupted", "master", "Evicted")] * MAX_INTERRUPTIONS + [("lost", "master", "Evicted")],
        "Evicted",
    ),
    "interrupted over MAX_INTERRUPTIONS, without a type: lost": (
        {(0, n): End(None, "node lost", interrupted=True) for n in range(1, MAX_INTERRUPTIONS + 2)},
        {},
        (0, 1, 0),
        [("interrupted", "master", "Interrupted")] * MAX_INTERRUPTIONS + [("lost", "master", "AttemptLost")],
        "AttemptLost",
    ),
    "interrupted, but the runner recorded an error": (
        {(0, 1): End(None, "evicted", record=error_record(), error_type="Evicted", interrupted=True)},
        {"retries": 1},
        (1, 0, 1),
        [("error", "runner", "ValueError"), ("success", "runner", "")],
        None,
    ),
    "cancelled by another master: run again, not a failure": (
        {(0, 1): End(None, "pod deleted", record=cancelled_by_master(), error_type="PodDeleted", interrupted=True)},
        {},
        (1, 0, 0),
        [("cancelled", "master", "Cancelled"), ("success", "runner", "")],
        None,
    ),
    "cancelled by another master, whatever the exit": (
        {(0, 1): End(137, "killed", record=cancelled_by_master())},
        {},
        (1, 0, 0),
        [("cancelled", "master", "Cancelled"), ("success", "runner", "")],
        None,
    ),
    "timeout, retried": (
        {(0, 1): Hang()},
        {"retries": 1, "element_timeout": 5.0},
        (1, 0, 1),
        [("timeout", "master", "Timeout"), ("success", "runner", "")],
        None,
    ),
    "timeout, its runner quick to record its SIGTERM stop": (
        {(0, 1): Hang(records_its_stop=True)},
        {"element_timeout": 5.0},
        (0, 1, 0),
        [("timeout", "master", "Timeout")],
        "Timeout",
    ),
    "timeout, no retries left": (
        {(0, 1): Hang()},
        {"element_timeout": 5.0},
        (0, 1, 0),
        [("timeout", "master", "Timeout")],
        "Timeout",
    ),
    "runner error record, retried": (
        {(0, 1): End(1, record=error_record())},
        {"retries": 1},
        (1, 0, 1),
        [("error", "runner", "ValueError"), ("success", "runner", "")],
        None,
    ),
    "runner error record, over the retries": (
        {(0, n): End(1, record=error_record()) for n in (1, 2, 3)},
        {"retries": 2},
        (0, 1, 2),
        [("error", "runner", "ValueError")] * 3,
        "ValueError",
    ),
    "unusable input: not retried": (
        {(0, 1): End(2, record=unusable_record("input"))},
        {"retries": 3},
        (0, 1, 0),
        [("unusable_input", "runner", "CorruptBlobError")],
        "CorruptBlobError",
    ),
    "backend error, not retryable": (
        {(0, 1): End(None, "no node fits", error_type="Unschedulable", retryable=False)},
        {"retries": 3},
        (0, 1, 0),
        [("lost", "master", "Unschedulable")],
        "Unschedulable",
    ),
    "backend error, retryable": (
        {(0, 1): End(137, "out of memory", error_type="OOMKilled", log_tail="allocating\n")},
        {"retries": 1},
        (1, 0, 1),
        [("lost", "master", "OOMKilled"), ("success", "runner", "")],
        None,
    ),
    "exit 0 without a result or record": (
        {(0, 1): End(0, "exited")},
        {},
        (0, 1, 0),
        [("lost", "master", "MissingResult")],
        "MissingResult",
    ),
    "exit 0, success record, no result": (
        {(0, 1): End(0, "exited", record=success_record())},
        {},
        (0, 1, 0),
        [("success", "runner", "")],
        "MissingResult",
    ),
    "lost, retried": (
        {(0, 1): End(137, "the process was killed", log_tail="last words\n")},
        {"retries": 1},
        (1, 0, 1),
        [("lost", "master", "AttemptLost"), ("success", "runner", "")],
        None,
    ),
    "lost, no retries left": (
        {(0, 1): End(None, "the pod vanished")},
        {},
        (0, 1, 0),
        [("lost", "master", "AttemptLost")],
        "AttemptLost",
    ),
}


@pytest.mark.parametrize("name", list(ENDS))
def test_how_an_attempt_ends(tmp_path, name):
    script, settings, expected_counts, expected_records, error_type = ENDS[name]
    job, backend, report = run(tmp_path, script, **settings)
    assert counts(report) == expected_counts, report.progress.describe()
    assert records(job) == expected_records
    assert not report.stopped
    if error_type is None:
        assert not report.failures and job.store.load_result(job.elements[0].key) == 0
    else:
        assert failure(report, job).error_type == error_type
        assert job.store.finished() == set()


def test_a_refused_result_is_moved_aside_and_its_record_keeps_the_runners_fields(tmp_path):
    job, backend, report = run(tmp_path, {(0, 1): Run(corrupt_result=True)})
    key = job.elements[0].key
    (attempt,) = job.store.attempts(key)
    record = job.store.attempt_record(key, attempt)
    assert record["result_written"] is True and record["outcome"] == "result_refused"
    assert "moved aside" in record["message"] and record["message"] == failure(report, job).message
    assert job.store.storage.list(naming.QUARANTINE_PREFIX)


def test_over_the_interruptions_the_message_counts_them_and_the_failure_follows_the_end(tmp_path):
    script = {
        (0, n): End(None, "preempted", error_type="Preempted", retryable=False, interrupted=True)
        for n in range(1, MAX_INTERRUPTIONS + 2)
    }
    job, backend, report = run(tmp_path, script, retries=3)
    f = failure(report, job)
    assert "interrupted %d times" % (MAX_INTERRUPTIONS + 1) in f.message and "preempted" in f.message
    assert not f.retryable and report.progress.retried == 0 and len(backend.launched) == MAX_INTERRUPTIONS + 1


def test_the_log_tail_of_an_attempt_that_ended_without_a_record_is_in_its_failure(tmp_path):
    job, backend, report = run(tmp_path, {(0, 1): End(137, "the process was killed", log_tail="  last words\n")})
    assert (
        failure(report, job).message == "the process was killed before reporting an outcome; last output:\nlast words"
    )
    key = job.elements[0].key
    record = job.store.attempt_record(key, job.store.attempts(key)[0])
    assert record["message"] == failure(report, job).message and "started_by_master" in record

    (tmp_path / "b").mkdir()
    job, backend, report = run(
        tmp_path / "b", {(0, 1): End(None, "OOMKilled", error_type="OOMKilled", log_tail="x" * 3000)}
    )
    assert failure(report, job).message == "OOMKilled; last output:\n" + "x" * 2000


def test_a_timeout_message_names_the_setting(tmp_path):
    job, backend, report = run(tmp_path, {(0, 1): Hang()}, element_timeout=5.0)
    assert "element_timeout=5s" in failure(report, job).message
    assert backend.cancelled == [job.store.attempts(job.elements[0].key)[0]]


def test_runner_error_failure_carries_its_record(tmp_path):
    job, backend, report = run(tmp_path, {(0, 1): End(1, record=error_record("KeyError", "'x'"))})
    f = failure(report, job)
    assert (f.error_type, f.message, f.traceback, f.retryable, f.fatal) == ("KeyError", "'x'", "Traceback", True, False)


# --- failures that stop the job -------------------------------------------------------------------

STOPS = {  # name: (script on item 0's first attempt, the failure's error_type)
    "function unusable": (End(2, record=unusable_record("function", "ModuleNotFoundError")), "ModuleNotFoundError"),
    "input unusable with a version mismatch": (
        End(2, record=unusable_record("input", "luigi_kubeface.errors.VersionMismatchError")),
        "luigi_kubeface.errors.VersionMismatchError",
    ),
    "backend error, fatal": (End(None, "image missing", error_type="ImagePullBackOff", fatal=True), "ImagePullBackOff"),
    "lost, fatal": (End(None, "image missing", fatal=True), "AttemptLost"),
}


@pytest.mark.parametrize("name", list(STOPS))
def test_a_fatal_failure_stops_the_job(tmp_path, name):
    script, error_type = STOPS[name]
    job, backend, report = run(tmp_path, {(0, 1): script}, n=4, max_in_flight=1, retries=3)
    f = failure(report, job)
    assert f.fatal and f.error_type == error_type and report.stopped.startswith(error_type + ": ")
    assert counts(report) == (0, 1, 0) and len(backend.launched) == 1
    assert report.not_run == [e.key for e in job.elements[1:]]


def test_unusable_input_of_one_element_does_not_stop_the_others(tmp_path):
    job, backend, report = run(tmp_path, {(0, 1): End(2, record=unusable_record("input"))}, n=3, retries=2)
    assert counts(report) == (2, 1, 0) and not report.stopped and not failure(report, job).fatal


def test_a_stop_cancels_what_still_runs_and_records_why(tmp_path):
    script = {(0, 1): End(2, record=unusable_record("function"))}
    script.update({(i, 1): Hang() for i in (1, 2)})
    job, backend, report = run(tmp_path, script, n=3, leaves=True)  # a failure: never left running
    assert sorted(backend.cancelled) == sorted(s.attempt for s in backend.launched[1:])
    for item in (1, 2):
        key = job.elements[item].key
        record = job.store.attempt_record(key, job.store.attempts(key)[0])
        assert record["outcome"] == "cancelled" and record["message"] == report.stopped


def test_the_failure_budget_stops_the_job(tmp_path):
    script = {(i, 1): End(1, record=error_record()) for i in (0, 1)}
    job, backend, report = run(tmp_path, script, n=10, max_in_flight=1, failure_budget=0.1)
    assert report.stopped == "2 of 10 elements failed for good, more than the failure budget of 10%"
    assert counts(report) == (0, 2, 0) and len(report.not_run) == 8


def test_the_first_elements_all_failing_stops_the_job(tmp_path):
    script = {(i, 1): End(1, record=error_record()) for i in range(ALL_FAILED_STOP + 2)}
    job, backend, report = run(tmp_path, script, n=ALL_FAILED_STOP + 2, max_in_flight=2)
    assert report.stopped == "the first %d elements to finish all failed" % ALL_FAILED_STOP
    assert counts(report) == (0, ALL_FAILED_STOP, 0) and len(report.not_run) == 2


def test_one_success_keeps_a_failing_job_running_within_its_budget(tmp_path):
    script = {(i, 1): End(1, record=error_record()) for i in range(1, ALL_FAILED_STOP + 2)}
    job, backend, report = run(tmp_path, script, n=ALL_FAILED_STOP + 2, max_in_flight=1)
    assert not report.stopped and counts(report) == (1, ALL_FAILED_STOP + 1, 0)
    assert len(report.summary()) == 1 and report.summary()[0].startswith("%d x ValueError" % (ALL_FAILED_STOP + 1))


# --- speculation -----------------------------------------------------------------------------------


def speculating(tmp_path, script, durations, **overrides):
    settings = dict(n=4, speculation=True, speculation_min_done=0.5, speculation_multiple=3, max_in_flight=4)
    settings.update(overrides)
    return run(
        tmp_path, script, duration=lambda spec: durations.get((int(spec.label), int(spec.attempt[:3])), 1.0), **settings
    )


def test_speculation_the_backup_wins_and_the_loser_is_recorded_cancelled(tmp_path):
    job, backend, report = speculating(tmp_path, {}, {(3, 1): 100.0})
    assert counts(report) == (4, 0, 0) and report.progress.speculated == 1
    assert records(job, 3) == [("cancelled", "master", "Cancelled"), ("success", "runner", "")]
    assert backend.cancelled == [job.store.attempts(job.elements[3].key)[0]]


def test_speculation_a_sibling_without_a_result_leaves_the_decision_to_the_other(tmp_path):
    # The backup fails first; the straggler still runs and its result counts: no failure, no retry.
    job, backend, report = speculating(tmp_path, {(3, 2): End(1, record=error_record())}, {(3, 1): 10.0})
    assert counts(report) == (4, 0, 0) and report.progress.speculated == 1 and not backend.cancelled
    assert records(job, 3) == [("success", "runner", ""), ("error", "runner", "ValueError")]


def test_speculation_when_both_fail_the_last_to_end_decides(tmp_path):
    script = {(3, 1): End(1, record=error_record("KeyError")), (3, 2): End(1, record=error_record("ValueError"))}
    job, backend, report = speculating(tmp_path, script, {(3, 1): 10.0})
    assert counts(report) == (3, 1, 0) and failure(report, job, 3).error_type == "KeyError"


def test_speculation_a_straggler_that_times_out_leaves_the_decision_to_its_backup(tmp_path):
    job, backend, report = speculating(tmp_path, {(3, 1): Hang()}, {(3, 2): 18.0}, element_timeout=20.0)
    assert counts(report) == (4, 0, 0) and report.progress.speculated == 1
    straggler = backend.launched[3].attempt
    assert backend.cancelled == [straggler]
    assert records(job, 3) == [("success", "runner", "")]  # the straggler's end decided nothing: no record


# --- shutdown ----------------------------------------------------------------------------------------


def interrupt_when_running(progress):
    if progress.running:
        raise KeyboardInterrupt


@pytest.mark.parametrize("leaves", [False, True])
def test_ctrl_c_cancels_attempts_unless_the_backend_leaves_them_for_a_rerun(tmp_path, leaves):
    with pytest.raises(KeyboardInterrupt) as stop:
        run(tmp_path, lambda spec, number: Hang(), n=2, leaves=leaves, on_progress=interrupt_when_running)
    assert stop.value.report.stopped == "interrupted: the master received SIGINT (Ctrl-C)"  # for the run's summary
    job = Job("table", str(tmp_path / "storage"), square, elements_from_items(range(2)))
    found = [records(job, i) for i in (0, 1)]
    if leaves:
        assert found == [[], []]
    else:
        assert found == [[("cancelled", "master", "Cancelled")]] * 2
        key = job.elements[0].key
        assert (
            job.store.attempt_record(key, job.store.attempts(key)[0])["message"]
            == "interrupted: the master received SIGINT (Ctrl-C)"
        )


# --- adoption ----------------------------------------------------------------------------------------


def test_adopted_attempts_are_followed_not_launched_again(tmp_path):
    def adopted(job):
        job.store.write_input(job.elements[0], job.shared_keys, job.code_version)  # as the earlier master did
        return [
            AttemptSpec(
                job.id, job.url, job.elements[0].key, "002-1-aaaaaaaaaaaa", "0", secret_env=job.store.secret_env()
            )
        ]

    job, backend, report = run(tmp_path, {(0, 2): End(1, record=error_record())}, n=2, adopted=adopted, retries=1)
    assert counts(report) == (2, 0, 1)
    assert [s.label for s in backend.launched] == ["1", "0"]
    assert backend.launched[1].attempt.startswith("003-")  # numbering goes on from the adopted attempt
    assert records(job, 0) == [("error", "runner", "ValueError"), ("success", "runner", "")]


def test_adopted_attempts_of_elements_done_or_gone_are_cancelled(tmp_path):
    def adopted(job):
        done = job.elements[0]
        job.store.write_input(done, job.shared_keys, job.code_version)
        job.store.storage.write(naming.result_key(done.key, job.code_version), b"")  # listed as done
        return [
            AttemptSpec(job.id, job.url, done.key, "001-1-aaaaaaaaaaaa", "0"),
            AttemptSpec(job.id, job.url, "f" * 24, "001-1-bbbbbbbbbbbb", "gone"),
        ]

    job, backend, report = run(tmp_path, {}, n=2, adopted=adopted)
    assert sorted(backend.cancelled) == ["001-1-aaaaaaaaaaaa", "001-1-bbbbbbbbbbbb"]
    assert report.progress.reused == 1 and counts(report) == (1, 0, 0)


def test_siblings_timing_out_together_after_the_result_came_end_once(tmp_path):
    # The straggler wrote its result but never exits; its backup hangs. Both time out in one round
    # (a backend that counts their time from one start): the first wins and cancels the second,
    # which must not be timed out again.
    class OneStart(SimulatedBackend):
        def started(self, attempt, launched):
            return 0.0

    settings = Settings(
        storage_root=str(tmp_path),
        max_in_flight=4,
        retries=0,
        poll_interval=0.1,
        speculation=True,
        speculation_min_done=0.5,
        speculation_multiple=3,
        element_timeout=20.0,
    )
    job = Job("table", settings.storage_root, square, elements_from_items(range(4)))
    job.prepare()
    script = {(3, 1): Run(exit_late=True), (3, 2): Hang()}
    backend = OneStart(
        settings,
        lambda spec: 5.0 if spec.label == "3" else 1.0,
        lambda spec, number: script.get((int(spec.label), number)),
    )
    report = run_job(job, backend, settings, clock=backend.clock, sleep=backend.sleep)
    assert counts(report) == (4, 0, 0) and report.progress.speculated == 1
    assert records(job, 3) == [("success", "runner", ""), ("cancelled", "master", "Cancelled")]
