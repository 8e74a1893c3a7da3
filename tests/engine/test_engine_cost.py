"""What the engine charges, on the simulated backend's virtual clock: each ended attempt to one category,
and max_cost stopping the job as the failure budget does."""

import pytest

from luigi_kubeface.backends.simulated import End, Hang, error_record
from luigi_kubeface.bucket.records import Outcome
from test_engine_table import run as table_run

TEN_SECONDS = 10.0 / 3600  # core-hours of one local attempt of 10 virtual seconds


def run(tmp_path, script=None, n=1, duration=10.0, **overrides):
    """n elements of `duration` virtual seconds each, one retry; script: {(item, attempt number): End/Hang}."""
    return table_run(tmp_path, script, n=n, duration=lambda spec: duration, **dict({"retries": 1}, **overrides))


def usage(report, category):
    found = report.cost.usage[category]
    return found.attempts, found.cpu_hours


def test_a_retried_element_charges_its_failed_attempt_as_retried_and_its_result_as_succeeded(tmp_path):
    _, _, report = run(tmp_path, {(0, 1): End(exit_code=1, record=error_record())}, duration=10.0)
    assert usage(report, "retried") == (1, pytest.approx(TEN_SECONDS))
    assert usage(report, "succeeded") == (1, pytest.approx(TEN_SECONDS))
    assert report.progress.counts()["cost"]["succeeded"]["attempts"] == 1  # what the run's summary records


def test_an_element_that_fails_for_good_charges_failed_work(tmp_path):
    _, _, report = run(tmp_path, {(0, 1): End(exit_code=1, record=error_record())}, retries=0)
    assert usage(report, "failed")[0] == 1 and report.cost.total().attempts == 1


def test_an_interrupted_attempt_is_charged_as_preempted(tmp_path):
    _, _, report = run(
        tmp_path, {(0, 1): End(None, "the node was preempted", error_type="Preempted", interrupted=True)}
    )
    assert usage(report, "preempted")[0] == 1 and usage(report, "succeeded")[0] == 1


def test_the_losing_attempt_of_a_speculated_element_is_charged_as_speculated(tmp_path):
    job, backend, report = run(
        tmp_path, {(3, 1): Hang()}, n=4, speculation=True, speculation_min_done=0.5, speculation_multiple=3
    )
    assert report.progress.speculated == 1 and usage(report, "succeeded")[0] == 4
    attempts, hours = usage(report, "speculated")
    assert attempts == 1 and hours > TEN_SECONDS * 3  # the straggler ran past 3 x the median before its backup
    straggler = backend.launched[3]
    record = job.store.attempt_record(straggler.element, straggler.attempt)
    assert record["outcome"] == Outcome.CANCELLED and record["duration"] == pytest.approx(hours * 3600)
    assert record["resources"]["cpu"] == 1.0 and record["started"] > 1e9  # wall-clock times, not the engine's


def test_attempts_the_master_stops_as_the_job_ends_early_are_charged_as_cancelled(tmp_path):
    _, _, report = run(
        tmp_path, {(0, 1): End(exit_code=1, record=error_record()), (1, 1): Hang()}, n=2, retries=0, failure_budget=0.0
    )
    assert report.stopped and usage(report, "failed")[0] == 1 and usage(report, "cancelled")[0] == 1


def test_max_cost_stops_the_job_once_the_work_started_costs_more_and_keeps_finished_results(tmp_path):
    # One core-second costs 1; one attempt at a time of 10 s: the third is running when 25 is passed.
    job, backend, report = run(tmp_path, n=4, max_in_flight=1, price_cpu_hour=3600.0, max_cost=25.0)
    assert "max_cost = 25" in report.stopped
    assert report.progress.succeeded == 2 and len(backend.launched) == 3
    assert job.store.finished() == {job.elements[0].key, job.elements[1].key}
    assert report.not_run == [job.elements[2].key, job.elements[3].key]
    assert usage(report, "succeeded")[0] == 2 and usage(report, "cancelled")[0] == 1
    assert report.cost.usage["succeeded"].cost == pytest.approx(20.0)


def test_each_attempt_record_holds_what_it_requested_and_its_price(tmp_path):
    job, backend, _ = run(tmp_path, price_cpu_hour=0.5)
    spec = backend.launched[0]
    assert job.store.attempt_record(spec.element, spec.attempt)["resources"] == {
        "cpu": 1.0,
        "memory_gb": 0.0,
        "gpus": 0.0,
        "spot": False,
        "price_hour": 0.5,
    }
