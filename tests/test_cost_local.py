"""What a job cost, end to end on the local backend: the run's summary, `kubeface status`, the status page and
records() agree on who used what (each runner process is charged one core for as long as it runs)."""

import io
import os
import time

import pytest

from luigi_kubeface import Client
from luigi_kubeface.cli import main
from luigi_kubeface.views.job_state import JobState
from luigi_kubeface.views.status_page import render
from support import FAST


def flaky_or_slow(x, marker_dir):
    """Element 1 fails its first attempt; element 3's first attempt straggles (its backup is quick)."""
    marker = os.path.join(marker_dir, str(x))
    first = not os.path.exists(marker)
    open(marker, "a").close()
    if first and x == 1:
        raise ValueError("first attempt of %d fails" % x)
    if first and x == 3:
        time.sleep(120)
    return x * x


@pytest.fixture(scope="module")
def costly(tmp_path_factory):
    """A job of 4 elements: one retried, one speculated, all succeed; prices set."""
    root = tmp_path_factory.mktemp("cost")
    markers = root / "markers"
    markers.mkdir()
    client = Client(
        storage_root=str(root / "storage"),
        retries=1,
        max_in_flight=4,
        speculation=True,
        speculation_min_done=0.5,
        speculation_multiple=1.5,
        price_cpu_hour=36.0,
        **FAST,
    )
    results = client.map(flaky_or_slow, range(4), job_id="costly", shared={"marker_dir": str(markers)})
    return root, results


def test_the_run_summary_splits_the_work_into_succeeded_retried_and_speculated(costly):
    _, results = costly
    assert list(results) == [0, 1, 4, 9]
    state = JobState(results.job).refresh()
    ledger = state.last_dispatch.cost
    assert ledger.usage["succeeded"].attempts == 4 and ledger.usage["retried"].attempts == 1
    assert ledger.usage["speculated"].attempts == 1 and ledger.usage["failed"].attempts == 0
    assert ledger.total().attempts == 6 and ledger.total().gb_hours == 0  # local: one core, memory not charged
    assert ledger.total().cost == pytest.approx(36.0 * ledger.total().cpu_hours)
    assert state.cost().total().attempts == 6  # the job's totals: its one run


def test_records_give_each_elements_own_cost_from_its_attempts(costly):
    _, results = costly
    records = results.records()
    assert all(r["cpu_hours"] > 0 and r["gb_hours"] == 0 and r["gpu_hours"] == 0 for r in records)
    assert all(r["cost"] == pytest.approx(36.0 * r["cpu_hours"]) for r in records)
    state = JobState(results.job).refresh()
    flaky = state.find("@1")
    assert len(flaky.attempts) == 2 and flaky.usage.attempts == 2  # its failed attempt is its cost too


def test_kubeface_status_shows_the_totals_per_category(costly):
    root, results = costly
    out = io.StringIO()
    main(["status", "costly", "--storage-root", str(root / "storage")], out=out)
    text = out.getvalue()
    assert "cost (all runs, requests x running time): 6 attempts" in text
    assert "  succeeded  4 attempts" in text and "  retried    1 attempts" in text
    succeeded = next(line for line in text.splitlines() if line.startswith("  succeeded "))
    assert "  speculated 1 attempts" in text and ", cost " in succeeded


def test_the_status_page_shows_the_totals_per_category(costly):
    _, results = costly
    page = render(JobState(results.job).refresh())
    table = page.split('<table id="cost">', 1)[1].split("</table>", 1)[0]
    assert [row.split("</td>", 1)[0] for row in table.split("<tr><td>")[1:]] == [
        "succeeded",
        "retried",
        "speculated",
        "total",
    ]
    assert "<th>cost</th>" in table
