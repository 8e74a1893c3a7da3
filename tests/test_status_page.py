"""The status page of real jobs (local backend), rendered in headless Chromium."""

import json
import os
import re
import threading
import time

import pytest

from luigi_kubeface import Client, JobFailedError
from luigi_kubeface.job.definition import Job
from luigi_kubeface.views.job_state import JobState
from luigi_kubeface.bucket.job_store import JobStore
from luigi_kubeface.views.status_page import page_url, render
from infra.browser import chromium, png_colours
from support import FAST, read_text


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
    html = read_text(page)
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
def test_page_shows_running_elements_while_the_job_runs(tmp_path, make_client):
    marker = str(tmp_path / "go")
    client = make_client("s")
    thread = threading.Thread(
        target=lambda: client.map(wait_for_marker, [0, 1, 2], job_id="live", shared={"marker": marker})
    )
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

    bucket, prefix = gcs_root[len("gs://") :].split("/", 1)
    blob = storage.Client().bucket(bucket).get_blob(prefix + "/on-gcs/status.html")
    assert blob.content_type.startswith("text/html")  # rendered by the console, not downloaded
    assert re.findall(r'<tr class="element ([a-z-]+)"', blob.download_as_text()) == ["done", "done"]


def train(params):
    import math

    base = {"logistic_regression": 0.95, "svm": 0.97, "random_forest": 0.94}[params["model"]]
    if params["model"] == "random_forest" and params["c"] == 10.0:
        raise ValueError("a failed element is not ranked")
    return {"accuracy": base - 0.01 * abs(math.log10(params["c"])), "std": 0.01 + 0.002 * math.log10(params["c"]) ** 2}


@pytest.mark.slow
def test_results_section_ranks_and_charts_twelve_elements_in_chromium(tmp_path, make_client):
    grid = [dict(model=m, c=c) for m in ("logistic_regression", "svm", "random_forest") for c in (0.01, 0.1, 1.0, 10.0)]
    client = make_client("s", retries=0, failure_budget=1.0, result_metric="accuracy")
    with pytest.raises(JobFailedError):
        client.map(train, grid, job_id="models")
    page = tmp_path / "s" / "models" / "status.html"
    screenshot = str(tmp_path / "results.png")
    dom = chromium("file://" + str(page), str(tmp_path), screenshot=screenshot, size=(1400, 1300))
    section = dom.split("<h2>Results</h2>")[1].split("<h2>Durations</h2>")[0]
    assert "11 result(s) with a value of <b>accuracy</b>, highest first" in section
    rows = re.findall(
        r'<tr class="result"><td class="num">(\d+)</td><td class="num">(\d+)</td><td>([a-z_]+)</td>'
        r'<td>([0-9.]+)</td><td class="num metric">([0-9.]+)</td>',
        section,
    )
    assert [int(r[0]) for r in rows] == list(range(1, 12))  # ranked, the failed element left out
    scores = [float(r[4]) for r in rows]
    assert scores == sorted(scores, reverse=True) and rows[0][2:4] == ("svm", "1")
    assert re.findall(r'<svg class="slice" data-param="([a-z]+)"', section) == ["model", "c"]
    assert "c (log scale)" in section and section.count('<g class="group">') == 3 + 4  # one per distinct value
    assert re.search(r'<svg class="parallel"[^>]*>.*<path d="M', section, re.S)
    assert "11 of 11 elements drawn" in section
    assert len(png_colours(screenshot)) > 20


def score_protein(params):
    return {"score": params["window"] * 10 + params["depth"] + int(params["protein"][1:]) / 100}


@pytest.mark.slow
def test_an_id_like_parameter_is_not_charted_as_a_category_and_says_why_in_chromium(tmp_path, make_client):
    """60 protein IDs, more than a chart labels (MAX_GROUPS): no band chart, no parallel axis; one line; the table keeps them."""
    from luigi_kubeface.views.result_charts import MAX_GROUPS

    grid = [dict(protein="P%05d" % i, window=1 + i % 3, depth=2 + 2 * (i % 2)) for i in range(MAX_GROUPS + 20)]
    make_client("s").map(score_protein, grid, job_id="proteome")
    page = tmp_path / "s" / "proteome" / "status.html"
    dom = chromium("file://" + str(page), str(tmp_path), size=(1400, 1300))
    section = dom.split("<h2>Results</h2>")[1].split("<h2>Durations</h2>")[0]
    assert re.findall(r'<div class="note not-charted" data-param="(\w+)">([^<]*)</div>', section) == [
        (
            "protein",
            "protein: 60 distinct values, more than a chart can label (40): not charted as a category; the "
            "table lists them",
        )
    ]
    assert re.findall(r'<svg class="slice" data-param="(\w+)"', section) == ["window", "depth"]
    (parallel,) = re.findall(r'<svg class="parallel".*?</svg>', section, re.S)
    assert ">window</text>" in parallel and ">depth</text>" in parallel and "protein" not in parallel
    assert "P000" not in parallel and "other" not in section.split('<svg class="slice"', 1)[1]
    assert "<th>protein</th>" in section and "<td>P00059</td>" in section  # the best, in the table


def test_results_section_says_why_there_is_nothing_to_rank(finished_job, tmp_path):
    state = JobState(Job("uneven", os.path.dirname(finished_job))).refresh()
    assert '<svg class="slice" data-param="x"' in render(state)  # numbers: {"value": x}, one parameter
    html = render(JobState(Job("uneven", os.path.dirname(finished_job))).refresh(max_reads=0))
    assert "no results with a summary yet" in html  # records not read yet


@pytest.mark.slow
def test_results_section_at_fifty_thousand_elements_in_chromium(tmp_path):
    from luigi_kubeface.views.result_charts import MAX_LINES, MAX_POINTS
    from status_page_scale import build  # benchmarks/: pytest.ini puts it on the path

    job = build(str(tmp_path), 50000, results=True)
    state = JobState(job).refresh(max_reads=100000)
    began = time.process_time()
    html = render(state)
    print("render of 50,000 elements: %.2fs CPU, %d KB" % (time.process_time() - began, len(html) >> 10))
    page = tmp_path / "status.html"
    page.write_text(html)
    began = time.perf_counter()
    dom = chromium("file://" + str(page), str(tmp_path))
    print("Chromium load and layout: %.2fs" % (time.perf_counter() - began))
    section = dom.split("<h2>Results</h2>")[1].split("<h2>Durations</h2>")[0]
    assert "49900 result(s) with a value of <b>accuracy</b>" in section  # 100 failed
    assert "the best 50 of 49900" in section and section.count('<tr class="result">') == 50
    scores = [float(s) for s in re.findall(r'<td class="num metric">([-0-9.e]+)</td>', section)]
    assert scores == sorted(scores, reverse=True)
    slices = re.findall(r'<svg class="slice" data-param="(\w+)".*?</svg>', section, re.S)
    assert slices == ["learning_rate", "depth", "optimizer"]
    for chart in re.findall(r'<svg class="slice".*?</svg>', section, re.S):
        assert sum(d.count("h0") for d in re.findall(r'<path d="([^"]*)"', chart)) <= MAX_POINTS
    assert section.count('<g class="group">') == 40 + 12 + 3  # binned learning rates, depths, optimizers
    assert "%d of 49900 elements drawn" % MAX_LINES in section
    assert len(html) < 1 << 20  # the page stays small


@pytest.mark.slow
def test_a_planted_attempt_name_is_no_attempt_and_no_markup_in_chromium(tmp_path):
    """Item 4 of the attack review: attempts/<element>/<img src=x onerror=...>.json put the raw tag on the page."""
    root = str(tmp_path / "s")
    client = Client(storage_root=root, **FAST)
    results = client.map(uneven, [1, 2], job_id="planted")
    attempts = os.path.join(root, "planted", "attempts", results.keys[0])
    planted = "<img src=x onerror=\"document.title='PWNED'\">"
    with open(os.path.join(attempts, planted + ".json"), "w") as f:
        json.dump({"outcome": "success", "finished": time.time()}, f)
    page = tmp_path / "page.html"
    page.write_text(render(JobState(Job("planted", root)).refresh(), final=True))
    html = page.read_text()
    assert "<img" not in html and "onerror" not in html
    assert planted not in Job("planted", root).store.attempts(results.keys[0])  # not an attempt id: no attempt
    dom = chromium("file://%s" % page, str(tmp_path))
    assert "PWNED" not in dom


def test_page_in_an_s3_bucket_links_to_the_bucket_not_to_a_file(s3_root, moto_s3):
    """The storage says where a browser opens its page (once file://s3://...)."""
    Client(storage_root=s3_root, **FAST).map(uneven, [0, 1], job_id="on-s3")
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    job = JobStore.at(s3_root, "on-s3")
    assert page_url(job) == "%s/%s/%s/on-s3/status.html" % (moto_s3.url, bucket, prefix)
    page = moto_s3.client().get_object(Bucket=bucket, Key=prefix + "/on-s3/status.html")
    assert page["ContentType"].startswith("text/html")
    assert re.findall(r'<tr class="element ([a-z-]+)"', page["Body"].read().decode()) == ["done", "done"]
