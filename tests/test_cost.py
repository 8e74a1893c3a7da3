"""cost.py's arithmetic: requests times running time, per category, priced with a spot discount."""

import json

import pytest

from luigi_kubeface import cost
from luigi_kubeface.errors import ConfigurationError
from luigi_kubeface.bucket.records import RunSummary
from luigi_kubeface.settings import Settings


def test_kubernetes_quantities_read_as_numbers():
    assert cost.quantity("500m") == 0.5 and cost.quantity("2") == 2.0 and cost.quantity("1.5Gi") == 1.5 * 2**30
    assert cost.quantity("") is None and cost.quantity("lots") is None


def test_a_pod_requests_its_cpu_memory_and_gpus_and_a_local_process_one_core():
    settings = Settings(cpu_request="250m", memory_request="3Gi", gpus=1, spot=True)
    assert cost.kubernetes_request(settings) == cost.Request(0.25, 3.0, 1.0, True)
    assert cost.LOCAL == cost.Request(cpu=1.0, memory_gb=0.0, gpus=0.0)


def test_prices_per_hour_add_up_and_spot_attempts_get_the_discount():
    prices = cost.Prices(cpu_hour=0.04, gb_hour=0.005, gpu_hour=2.0, spot_discount=0.75)
    on_demand = prices.priced(cost.Request(2, 4, 1, spot=False))
    assert on_demand.price_hour == pytest.approx(2 * 0.04 + 4 * 0.005 + 2.0)
    assert prices.priced(cost.Request(2, 4, 1, spot=True)).price_hour == pytest.approx(on_demand.price_hour / 4)


def test_usage_is_the_request_times_the_hours_it_ran():
    usage = cost.Usage.of(cost.Request(2, 8, 0, price_hour=1.5), 1800)
    assert (usage.attempts, usage.seconds, usage.cpu_hours, usage.gb_hours, usage.gpu_hours) == (1, 1800, 1, 4, 0)
    assert usage.cost == pytest.approx(0.75)
    assert cost.Usage.of(cost.LOCAL, -3).seconds == 0  # a clock that went backwards charges nothing


def test_a_ledger_totals_its_categories_and_reads_back_what_it_wrote():
    ledger = cost.Ledger()
    ledger.charge("succeeded", cost.LOCAL, 3600)
    ledger.charge("retried", cost.LOCAL, 1800)
    ledger.charge("retried", cost.LOCAL, 1800)
    assert ledger.total().attempts == 3 and ledger.total().cpu_hours == pytest.approx(2)
    again = cost.Ledger.from_json(ledger.to_json())
    assert again.usage["retried"].attempts == 2 and again.total().cpu_hours == pytest.approx(2)
    assert [name for name, _ in cost.breakdown(again)] == ["succeeded", "retried", "total"]
    with pytest.raises(ValueError, match="unknown cost category"):
        ledger.charge("wasted", cost.LOCAL, 1)


def test_ledgers_of_runs_sum_to_the_jobs_and_a_run_before_costs_counts_nothing():
    first, second = cost.Ledger(), cost.Ledger()
    first.charge("succeeded", cost.LOCAL, 60)
    second.charge("failed", cost.LOCAL, 30)
    total = cost.total_of([first, second, RunSummary("old", 1.0, 2.0, counts={"succeeded": 3}).cost])
    assert total.usage["succeeded"].seconds == 60 and total.usage["failed"].seconds == 30
    assert cost.Ledger.from_json({"succeeded": {"seconds": "many"}}).total().seconds == 0  # an altered summary


def test_an_elements_cost_sums_its_attempt_records_that_tell_resources_and_duration():
    records = [
        {"resources": cost.Request(2, 1, 0).to_record(), "duration": 1800},
        {"resources": cost.LOCAL.to_record(), "duration": 3600},
        {"duration": 100},  # written before costs were kept
        {"resources": cost.LOCAL.to_record()},
    ]  # its runner was killed before it told its duration
    usage = cost.element_usage(records)
    assert usage.attempts == 2 and usage.cpu_hours == pytest.approx(2) and usage.gb_hours == pytest.approx(0.5)
    assert cost.element_usage([{"duration": 5}]) is None


def test_the_runner_reads_its_request_from_the_environment_and_survives_a_bad_one():
    request = cost.Request(0.5, 2, 0, price_hour=0.1)
    assert cost.request_from_env({cost.RESOURCES_ENV: json.dumps(request.to_record())}) == request.to_record()
    assert cost.request_from_env({cost.RESOURCES_ENV: "{not json"}) == {}
    assert cost.request_from_env({}) == {}


def test_max_cost_stops_only_past_its_limit():
    assert cost.over_budget(10.0, 0) == ""
    assert cost.over_budget(10.0, 10.0) == ""
    assert "more than max_cost = 10" in cost.over_budget(10.5, 10.0)


def test_max_cost_without_a_price_is_refused_naming_the_prices():
    with pytest.raises(ConfigurationError, match="max_cost.*price_cpu_hour"):
        Settings(max_cost=5)
    with pytest.raises(ConfigurationError, match="spot_discount"):
        Settings(spot_discount=1.0)
    assert Settings(max_cost=5, price_gpu_hour=2.0).max_cost == 5
