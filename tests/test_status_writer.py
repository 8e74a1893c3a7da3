"""The running job's page gives way to the engine: its refreshes never take more than a tenth of the master's time."""

from luigi_kubeface.views.status_writer import PAGE_SHARE, next_wait


def test_a_quick_page_is_refreshed_every_interval():
    assert next_wait(15.0, 0.2) == 15.0


def test_a_slow_page_waits_long_enough_to_stay_within_its_share():
    took = 6.0  # a page of a large job: thousands of records listed and read
    wait = next_wait(15.0, took)
    assert wait > 15.0
    assert took / (took + wait) <= PAGE_SHARE + 1e-9
