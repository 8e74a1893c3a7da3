"""The status page of real jobs (local backend), rendered in headless Chromium."""

import json
import os
import re
import threading
import time

import pytest

from luigi_kubeface import Client, JobFailedError
from luigi_kubeface.job import Job
from luigi_kubeface.job_state import JobState
from luigi_kubeface.status_page import render
from support import chromium, png_colours

FAST = dict(poll_interval=0.05, retry_backoff=0.1)


def uneven(x):
    import time

    print("element", x)
    time.sleep(0.05 * (x % 5))
    if x % 7 == 3:
        raise ValueError("x=%d is bad on purpose" % x)
    return x


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("status-page"))
    client = Client(storage_root=root, retries=1, failure_budget=1.0, max_in_flight=3, **FAST)
    with pytest.raises(JobFailedError):
        client.map(uneven, range(14), job_id="uneven")
    return os.path.join(root, "uneven")


@pytest.mark.slow
def test_page_renders_table_histogram_and_timeline_in_chromium(finished_job, tmp_path):
    page = os.path.join(finished_job, "status.html")
    html = open(page).read()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html  # no network
    assert 'http-equiv="refresh"' not in html  # the final page stops refreshing
    screenshot = str(tmp_path / "status.png")
    dom = chromium("file://" + page, str(tmp_path), screenshot=screenshot)
    rows = re.findall(r'<tr class="element ([a-z-]+)"', dom)
    assert sorted(rows) == ["done"] * 12 + ["failed"] * 2
    assert rows[:2] == ["failed", "failed"]  # failed elements first
    assert dom.count("remote traceback") == 2 and "ValueError: x=3 is bad on purpose" in dom
    assert re.search(r'<svg class="histogram"[^>]*>.*<rect', dom, re.S)
    assert re.search(r'<svg class="timeline"[^>]*>.*<polygon', dom, re.S)
    assert re.search(r'id="count-succeeded"><b>12</b>', dom) and re.search(r'id="count-retried"><b>2</b>', dom)
    # every attempt's log is linked relatively, and the link resolves next to the page
    links = re.findall(r'<a href="(logs/[0-9a-f]+/[^"]+\.log)"', dom)
    assert len(links) == 12 + 2 * 2
    assert all(os.path.exists(os.path.join(finished_job, link)) for link in links)
    assert len(png_colours(screenshot)) > 20  # drawn, not blank


def test_table_is_capped_with_failed_first(finished_job):
    state = JobState(Job("uneven", os.path.dirname(finished_job))).refresh()
    html = render(state, limit=3)
    assert "showing 3 of 14 elements" in html
    assert re.findall(r'<tr class="element ([a-z-]+)"', html) == ["failed", "failed", "done"]


def test_records_are_read_once_and_newest_first(finished_job):
    state = JobState(Job("uneven", os.path.dirname(finished_job)), max_reads=5).refresh()
    assert len(state.records) == 5 and state.unread == 16 - 5
    assert [e.state for e in state.elements()].count("failed") == 2  # records that decide a state come first
    first = dict(state.records)
    state.refresh()
    assert len(state.records) == 10 and all(state.records[k] is v for k, v in first.items())  # cached, not reread
    state.refresh(max_reads=100)
    assert len(state.records) == 16 and state.unread == 0


def wait_for_marker(x, marker):
    import os
    import time

    while x == 1 and not os.path.exists(marker):
        time.sleep(0.05)
    return x


@pytest.mark.slow
def test_page_shows_running_elements_while_the_job_runs(tmp_path):
    marker = str(tmp_path / "go")
    client = Client(storage_root=str(tmp_path / "s"), **FAST)
    thread = threading.Thread(target=lambda: client.map(wait_for_marker, [0, 1, 2], job_id="live",
                                                        shared={"marker": marker}))
    thread.start()
    page = tmp_path / "s" / "live" / "status.html"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            html = page.read_text() if page.exists() else ""
            if '<tr class="element running"' in html:
                break
            time.sleep(0.2)
        assert '<tr class="element running"' in html and 'http-equiv="refresh"' in html
        assert "<td>1</td>" in html  # the running element's parameters
    finally:
        open(marker, "w").close()
        thread.join(timeout=120)
    html = page.read_text()
    assert re.findall(r'<tr class="element ([a-z-]+)"', html) == ["done"] * 3
    live = json.loads((tmp_path / "s" / "live" / "progress.json").read_text())
    assert live["final"] and live["running"] == {} and live["counts"]["succeeded"] == 3
    assert 'http-equiv="refresh"' not in html


def test_page_in_a_gcs_bucket_opens_in_the_browser(gcs_root):
    Client(storage_root=gcs_root, **FAST).map(uneven, [0, 1], job_id="on-gcs")
    from google.cloud import storage

    bucket, prefix = gcs_root[len("gs://"):].split("/", 1)
    blob = storage.Client().bucket(bucket).get_blob(prefix + "/on-gcs/status.html")
    assert blob.content_type.startswith("text/html")  # rendered by the console, not downloaded
    assert re.findall(r'<tr class="element ([a-z-]+)"', blob.download_as_text()) == ["done", "done"]
