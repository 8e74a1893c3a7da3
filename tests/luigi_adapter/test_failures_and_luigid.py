"""Failures as users see them through `luigi`, and the map task's elements in a real luigid."""

import glob
import threading
import os

import pytest

from support import run_luigi, read_text

TOY = ["--module", "pipelines.toy"]


def luigi_toy(tmp_path, *args, scheduler=None):
    flags = [
        "--kubeface-storage-root",
        str(tmp_path / "storage"),
        "--kubeface-poll-interval",
        "0.1",
        "--kubeface-retry-backoff",
        "0.1",
    ]
    flags += (
        ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(scheduler.port)]
        if scheduler
        else ["--local-scheduler"]
    )
    result = run_luigi(TOY + list(args) + flags, cwd=tmp_path)
    return result, result.stdout + result.stderr


def test_failing_element_shows_remote_traceback_then_fix_reruns_only_it(tmp_path):
    result, output = luigi_toy(
        tmp_path,
        "SumSquares",
        "--Squares-mode",
        "raise",
        "--Squares-bad",
        "[4]",
        "--kubeface-retries",
        "0",
        "--kubeface-failure-budget",
        "0.5",
    )
    assert result.returncode == 30  # [retcode] task_failed in luigi.cfg
    assert "element x=4 failed: ValueError: x=4 is bad on purpose" in output
    assert "Remote traceback" in output and "in run_element" in output
    assert "1 failed:" in output and "KubefaceElement" in output
    assert len(glob.glob(str(tmp_path / "storage" / "*" / "results" / "*.pkl"))) == 5

    result, output = luigi_toy(tmp_path, "SumSquares")
    assert result.returncode == 0, output[-3000:]
    assert "5 already done, 1 to run" in output
    assert (tmp_path / "sum-6.txt").read_text() == str(sum(x * x for x in range(6)))


def test_failure_budget_stops_a_job_where_most_elements_fail(tmp_path):
    result, output = luigi_toy(
        tmp_path,
        "Squares",
        "--n",
        "12",
        "--mode",
        "raise",
        "--bad",
        str(list(range(1, 12))),
        "--kubeface-retries",
        "0",
        "--kubeface-max-in-flight",
        "2",
    )
    assert result.returncode == 30
    assert "stopped early" in output
    assert "was not run: the job stopped early" in output
    finished = glob.glob(str(tmp_path / "storage" / "*" / "attempts" / "*" / "*.json"))
    assert len(finished) <= 6  # launched at most: budget (2 failures) + what was in flight


def test_element_past_its_timeout_is_killed_and_reported(tmp_path):
    result, output = luigi_toy(
        tmp_path,
        "Squares",
        "--n",
        "3",
        "--mode",
        "sleep",
        "--bad",
        "[1]",
        "--seconds",
        "120",
        "--kubeface-element-timeout",
        "2",
        "--kubeface-retries",
        "0",
        "--kubeface-failure-budget",
        "1",
    )
    assert result.returncode == 30
    assert "Timeout: the attempt ran longer than element_timeout=2s and was killed" in output


def test_an_empty_grid_is_a_map_over_nothing(tmp_path):
    result, output = luigi_toy(tmp_path, "SumSquares", "--n", "0")
    assert result.returncode == 0, output[-3000:]
    assert (tmp_path / "sum-0.txt").read_text() == "0"  # downstream ran over no results
    assert not glob.glob(str(tmp_path / "storage" / "*"))  # no job: nothing to store


def test_unknown_backend_is_refused(tmp_path):
    result, output = luigi_toy(tmp_path, "Squares", "--kubeface-backend", "nomad")
    assert result.returncode != 0
    assert (
        "unknown backend 'nomad': set [kubeface] backend (or --kubeface-backend) to one of kubernetes, local" in output
    )


@pytest.mark.slow
def test_map_task_and_elements_in_luigid(tmp_path, luigid):
    result, output = luigi_toy(
        tmp_path,
        "SumSquares",
        "--n",
        "5",
        "--Squares-mode",
        "raise",
        "--Squares-bad",
        "[3]",
        "--kubeface-retries",
        "0",
        "--kubeface-failure-budget",
        "0.5",
        scheduler=luigid,
    )
    assert result.returncode == 30, output[-3000:]
    failed = luigid.tasks("FAILED")
    (element,) = [t for t in failed.values() if t["name"] == "KubefaceElement"]
    assert element["params"]["params"] == "x=3"
    (element_id,) = [i for i, t in failed.items() if t["name"] == "KubefaceElement"]
    error = luigid.error(element_id)
    assert "ValueError: x=3 is bad on purpose" in error and "Remote traceback" in error
    done = [t for t in luigid.tasks("DONE").values()]
    assert sorted(t["params"]["params"] for t in done if t["name"] == "KubefaceElement") == ["x=0", "x=1", "x=2", "x=4"]
    (job,) = [t for t in done if t["name"] == "KubefaceJob"]
    assert "4 succeeded" in (job.get("status_message") or "") and "1 failed" in job["status_message"]
    assert "0 reused" in job["status_message"] and "0 speculated" in job["status_message"]
    assert job["progress_percentage"] == 80
    page = job["tracking_url"]  # the job's status page, written next to its blobs
    assert page.startswith("file://") and page.endswith("/status.html")
    html = read_text(page[len("file://") :])
    assert html.count('<tr class="element failed"') == 1 and html.count('<tr class="element done"') == 4
    assert "ValueError: x=3 is bad on purpose" in html and "stopped early" not in html
    pending = luigid.tasks("PENDING")
    assert any(t["name"] == "Squares" for t in pending.values())

    result, output = luigi_toy(tmp_path, "SumSquares", "--n", "5", scheduler=luigid)
    assert result.returncode == 0, output[-3000:]
    done = luigid.tasks("DONE")
    assert {t["name"] for t in done.values()} >= {"SumSquares", "Squares", "KubefaceJob", "KubefaceElement"}
    assert not [t for t in luigid.tasks("FAILED").values()]


@pytest.mark.slow
def test_large_map_task_lists_only_elements_without_result_in_luigid(tmp_path, luigid):
    # Above luigid_elements, luigid gets one task per element without a result, not one per element.
    result, output = luigi_toy(
        tmp_path,
        "Squares",
        "--n",
        "7",
        "--mode",
        "raise",
        "--bad",
        "[5]",
        "--kubeface-retries",
        "0",
        "--kubeface-failure-budget",
        "0.5",
        "--kubeface-luigid-elements",
        "3",
        scheduler=luigid,
    )
    assert result.returncode == 30, output[-3000:]

    def ours(tasks):
        return [t for t in tasks.values() if t["name"] == "KubefaceElement" and "Squares_7_" in t["params"]["job"]]

    (failed,) = ours(luigid.tasks("FAILED"))
    assert failed["params"]["params"] == "x=5"
    assert ours(luigid.tasks("DONE")) == []
    jobs = [
        t for t in luigid.tasks("DONE").values() if t["name"] == "KubefaceJob" and "Squares_7_" in t["params"]["job"]
    ]
    assert "6 succeeded" in jobs[0]["status_message"] and "1 failed" in jobs[0]["status_message"]

    result, output = luigi_toy(tmp_path, "Squares", "--n", "7", "--kubeface-luigid-elements", "3", scheduler=luigid)
    assert result.returncode == 0, output[-3000:]
    assert "6 already done, 1 to run" in output


@pytest.mark.slow
def test_rerun_with_two_workers_reports_recomputed_element_as_done(tmp_path):
    # Forked Luigi workers inherit the parent's cached result listing: a cached "missing" from before
    # the job ran must never fail an element whose result the job has just written.
    result, output = luigi_toy(tmp_path, "SumSquares", "--n", "8")
    assert result.returncode == 0, output[-3000:]
    (tmp_path / "sum-8.txt").unlink()
    results = sorted(glob.glob(str(tmp_path / "storage" / "*" / "results" / "*.pkl")))
    assert len(results) == 8
    os.remove(results[0])
    result, output = luigi_toy(tmp_path, "SumSquares", "--n", "8", "--workers", "2")
    assert result.returncode == 0, output[-3000:]
    assert "7 already done, 1 to run" in output
    assert (tmp_path / "sum-8.txt").read_text() == str(sum(x * x for x in range(8)))


def test_escape_sequences_in_a_forged_record_never_reach_luigis_terminal(tmp_path):
    """Item 5 of the attack review: a forged newest attempt record wrote OSC 52 (clipboard) and OSC 0 (title)."""
    import json
    import time

    failing = (
        "SumSquares",
        "--Squares-mode",
        "raise",
        "--Squares-bad",
        "[4]",
        "--kubeface-retries",
        "0",
        "--kubeface-failure-budget",
        "0.5",
    )
    result, output = luigi_toy(tmp_path, *failing)
    assert "element x=4 failed" in output
    (attempts,) = [
        d
        for d in glob.glob(str(tmp_path / "storage" / "*" / "attempts" / "*"))
        if len(os.listdir(d)) == 1 and "ValueError" in read_text(glob.glob(d + "/*.json")[0])
    ]
    forged = {
        "outcome": "error",
        "error_type": "ValueError\x1b]0;owned\x07",
        "message": "copy this \x1b]52;c;ZWNobyBvd25lZA==\x07 \x1b[2J\u202etxt.exe",
        "traceback": "Traceback\n\x1b]52;c;cm0gLXJmIH4=\x07",
        "finished": time.time() + 3600,
    }
    first = set(os.listdir(attempts))
    done = threading.Event()

    def forge_the_rerun():  # attempts are numbered across runs: the rerun's record is the newest; forge it
        while not done.is_set():
            for name in set(os.listdir(attempts)) - first:
                if not name.endswith(".json"):
                    continue
                path = os.path.join(attempts, name)
                with open(path) as f:
                    if "copy this" in f.read():
                        continue
                with open(path + ".tmp", "w") as f:
                    json.dump(forged, f)
                os.replace(path + ".tmp", path)
            time.sleep(0.005)

    forger = threading.Thread(target=forge_the_rerun, daemon=True)
    forger.start()
    try:
        result, output = luigi_toy(tmp_path, *failing)
    finally:
        done.set()
        forger.join()
    assert "copy this" in output  # the forged record is the one shown, without what drives a terminal
    assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
