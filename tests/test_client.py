"""The engine through Client.map with the local backend: real processes, real storage."""

import glob
import os
import re
import signal
import sys
import time

import pytest

from luigi_kubeface import Client, ConfigurationError, JobFailedError
from luigi_kubeface.settings import Settings
from elements import square
from support import FAST, read_json, read_text


def records(root, job_id):
    return [read_json(p) for p in glob.glob(os.path.join(root, job_id, "attempts", "*", "*.json"))]


def test_map_returns_results_in_order_and_reuses_them(tmp_path, client):
    assert list(client.map(square, range(7), job_id="sq")) == [x * x for x in range(7)]
    assert len(records(str(tmp_path), "sq")) == 7
    assert list(client.map(square, [6, 5, 9], job_id="sq")) == [36, 25, 81]  # reordered and extended
    assert len(records(str(tmp_path), "sq")) == 8  # only 9 was computed


def test_map_on_gcs(gcs_root):
    results = Client(storage_root=gcs_root, **FAST).map(square, range(5), job_id="on-gcs")
    assert list(results) == [0, 1, 4, 9, 16]


def test_shared_inputs_are_uploaded_once(tmp_path, client):
    def scale(x, factor):
        return x * factor

    assert list(client.map(scale, [1, 2, 3], job_id="shared", shared={"factor": 10})) == [10, 20, 30]
    assert len(glob.glob(str(tmp_path / "shared" / "shared" / "*.pkl"))) == 1


def _temporary_files_open():
    """This process's descriptors on unlinked files: the temporary files shared inputs are pickled to."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink("/proc/self/fd/" + fd))
        except OSError:
            continue
    return sorted(target for target in found if target.endswith("(deleted)"))


def test_a_map_with_shared_inputs_closes_their_temporary_files(client):
    """Each shared input is pickled to a temporary file for its upload: closed once uploaded, not left
    to the garbage collector (a ResourceWarning, and a descriptor held as long as the job object lives)."""

    def plus_length(x, values):
        return x + len(values)

    before = _temporary_files_open()
    results = client.map(plus_length, [2, 3], job_id="shared-files", shared={"values": list(range(10))})
    assert _temporary_files_open() == before  # while the results (and so their job) are still in use
    assert list(results) == [12, 13]


def test_logs_are_captured_per_attempt(tmp_path, make_client):
    def chatty(x):
        print("hello from", x)
        print("to stderr", x, file=sys.stderr)
        os.system("echo from a child process")
        return x

    make_client().map(chatty, [42], job_id="chatty")
    (log,) = glob.glob(str(tmp_path / "chatty" / "logs" / "*" / "*.log"))
    text = read_text(log)
    assert "hello from 42" in text and "to stderr 42" in text and "from a child process" in text


def flaky(x, marker_dir):
    marker = os.path.join(marker_dir, str(x))
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return x


def test_failed_attempt_is_retried(tmp_path, make_client):
    client = make_client("s", retries=1)
    assert list(client.map(flaky, [1, 2], job_id="flaky", shared={"marker_dir": str(tmp_path)})) == [1, 2]
    outcomes = sorted(r["outcome"] for r in records(str(tmp_path / "s"), "flaky"))
    assert outcomes == ["error", "error", "success", "success"]


def test_retry_log_line_shows_a_sub_second_backoff(tmp_path, caplog, make_client):
    caplog.set_level("INFO", logger="luigi_kubeface")
    client = make_client("s", retries=1, poll_interval=0.05, retry_backoff=0.5)
    assert list(client.map(flaky, [1], job_id="flaky", shared={"marker_dir": str(tmp_path)})) == [1]
    (line,) = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert re.search(r"retrying in 0\.[4-6]s$", line), line  # 0.5 s with its +-20% jitter, not "0s"


def boom(x):
    raise KeyError("no such thing: %d" % x)


def test_element_error_carries_remote_traceback_and_summary(tmp_path, make_client):
    client = make_client(retries=0, failure_budget=1.0)
    with pytest.raises(JobFailedError) as caught:
        client.map(boom, [1, 2, 3], job_id="boom")
    text = str(caught.value)
    assert re.search(r"3 x KeyError: 'no such thing: \d'", text)  # one line for the 3 alike errors
    assert "Remote traceback" in text and "in boom" in text
    assert "Finished results are kept" in text
    assert (
        "`kubeface status %s`, or the status page file://%s" % (tmp_path / "boom", tmp_path / "boom" / "status.html")
        in text
    )


def half_fail(x):
    if x % 2:
        raise ValueError("odd")
    return x


def test_finished_results_survive_a_failed_job(tmp_path, make_client):
    client = make_client(retries=0, failure_budget=1.0)
    with pytest.raises(JobFailedError):
        client.map(half_fail, range(6), job_id="half")
    assert len(glob.glob(str(tmp_path / "half" / "results" / "*.pkl"))) == 3


def test_failure_budget_stops_early(tmp_path, make_client):
    client = make_client(retries=0, failure_budget=0.1, max_in_flight=1)
    with pytest.raises(JobFailedError, match="stopped early: 2 of 12 elements failed for good"):
        client.map(boom, range(12), job_id="budget")
    assert len(records(str(tmp_path), "budget")) == 2  # nothing launched after the budget was spent


def sleepy(x):
    time.sleep(60)


def test_timeout_kills_the_attempt(tmp_path, make_client):
    client = make_client(retries=0, element_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(JobFailedError, match="Timeout: the attempt ran longer than element_timeout=1.5s"):
        client.map(sleepy, [1], job_id="slow")
    assert time.monotonic() - started < 30
    (record,) = records(str(tmp_path), "slow")
    assert record["outcome"] == "timeout"


def exits(x):
    sys.exit(3)


def killed(x):
    os.kill(os.getpid(), signal.SIGKILL)


def unpicklable_result(x):
    return (i for i in range(x))


@pytest.mark.parametrize(
    "function,expected",
    [
        (exits, "SystemExit: the element called sys.exit(3)"),
        (killed, "AttemptLost: the process was killed by SIGKILL"),
        (unpicklable_result, "UnpicklableResult: the element returned a generator that cannot be pickled"),
    ],
)
def test_misbehaving_elements_are_explained(make_client, function, expected):
    client = make_client(retries=0)
    with pytest.raises(JobFailedError) as caught:
        client.map(function, [3], job_id="bad")
    assert expected in str(caught.value)


def test_bad_configuration_fails_before_launch(tmp_path, make_client):
    import threading

    with pytest.raises(ConfigurationError, match="unknown backend 'nomad'"):
        Settings(backend="nomad")
    with pytest.raises(ConfigurationError, match="max_in_flight = 1000 is out of range"):
        Settings(backend="kubernetes", image="r/kubeface:1", storage_root="gs://b/jobs", max_in_flight=1000)
    with pytest.raises(ConfigurationError, match="unknown kubeface setting"):
        Client(retry=3)
    with pytest.raises(ConfigurationError, match="does not exist"):
        Client(storage_root=str(tmp_path / "no" / "such")).map(square, [1])
    lock = threading.Lock()
    with pytest.raises(ConfigurationError, match="cannot be pickled"):
        make_client().map(lambda x: lock, [1])
    with pytest.raises(ConfigurationError, match="items 0 and 2 are identical"):
        make_client().map(square, [1, 2, 1])
    with pytest.raises(ConfigurationError, match="item 0 .* cannot be pickled"):
        make_client().map(square, [lock])
    assert make_client().map(square, []) == []  # nothing to do: nothing written
    assert not os.path.exists(tmp_path / "no")


def test_progress_bar_shows_the_counts_and_keeps_log_lines(make_client, capfd, caplog):
    client = make_client()
    assert list(client.map(square, range(4), job_id="bar", progress=True)) == [0, 1, 4, 9]
    err = capfd.readouterr().err
    assert "bar: 100%" in err and "4/4" in err and "4 succeeded, 0 running, 0 pending, 0 failed" in err
    client.map(square, range(4), job_id="bar-off")  # not a terminal: no bar unless asked
    assert "bar-off" not in capfd.readouterr().err
    with pytest.raises(JobFailedError):
        make_client(retries=0).map(boom, [1], job_id="bar-fail", progress=True)
    assert "0 succeeded, 0 running, 0 pending, 1 failed" in capfd.readouterr().err
    assert any("failed for good" in r.getMessage() for r in caplog.records)  # logging still reaches handlers


def leaves_children_running(x, marker_dir):
    import subprocess

    child = subprocess.Popen(["sleep", "300"])  # shares the element's stdout and stderr
    subprocess.run(["sh", "-c", 'sleep 300 & echo $! > "$0"', os.path.join(marker_dir, "grandchild")], check=True)
    open(os.path.join(marker_dir, "child"), "w").write(str(child.pid))
    print("started children of element", x)
    return x + 1


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_children_an_element_leaves_running_end_with_its_attempt(tmp_path, make_client):
    client = make_client("s", retries=0)
    assert list(client.map(leaves_children_running, [1], job_id="kids", shared={"marker_dir": str(tmp_path)})) == [2]
    pids = [int((tmp_path / name).read_text()) for name in ("child", "grandchild")]
    assert not [pid for pid in pids if alive(pid)], "the element's children outlived its attempt"
    (log,) = glob.glob(str(tmp_path / "s" / "kids" / "logs" / "*" / "*.log"))
    assert "started children of element 1" in read_text(log)


def result_then_hang(x):
    import threading

    threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon: the runner cannot exit
    return x * 10


@pytest.mark.slow
def test_attempt_killed_at_its_timeout_after_writing_its_result_succeeds(make_client):
    client = make_client(retries=0, element_timeout=20)
    assert list(client.map(result_then_hang, [4], job_id="late-exit")) == [40]


def last_words_then_exit(x):
    print("last words of", x)
    os._exit(0)


def talks_then_sleeps(x):
    print("still working on", x)
    time.sleep(300)


@pytest.mark.slow
@pytest.mark.parametrize(
    "function,settings,expected",
    [(last_words_then_exit, {}, "MissingResult"), (talks_then_sleeps, {"element_timeout": 10}, "Timeout")],
)
def test_output_is_kept_whatever_ends_the_attempt(tmp_path, function, settings, expected, make_client):
    client = make_client(retries=0, **settings)
    with pytest.raises(JobFailedError, match=expected):
        client.map(function, [7], job_id="evidence")
    (log,) = glob.glob(str(tmp_path / "evidence" / "logs" / "*" / "*.log"))
    assert ("last words of 7" if function is last_words_then_exit else "still working on 7") in read_text(log)


def odd_fails(x):
    if x % 2:
        raise ValueError("x=%d is odd" % x)
    return x


def test_map_writes_a_run_summary_as_luigi_runs_do(tmp_path, make_client):
    """Client.map and KubefaceJob share one dispatch sequence: each run leaves dispatches/<run>.json."""
    client = make_client(retries=0, failure_budget=1.0)
    with pytest.raises(JobFailedError):
        client.map(odd_fails, range(4), job_id="summed")
    (first,) = glob.glob(os.path.join(str(tmp_path), "summed", "dispatches", "*.json"))
    summary = read_json(first)
    assert summary["run"] == os.path.basename(first)[: -len(".json")] and summary["started"] <= summary["finished"]
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (4, 2, 2)
    assert re.fullmatch(r"2 x ValueError: x=\d is odd", *summary["errors"]) and summary["stopped"] == ""
    with pytest.raises(JobFailedError):
        client.map(odd_fails, range(4), job_id="summed")  # a rerun is another run with its own summary
    runs = glob.glob(os.path.join(str(tmp_path), "summed", "dispatches", "*.json"))
    (second,) = set(runs) - {first}  # run ids of one second do not sort by time
    assert len(runs) == 2 and read_json(second)["reused"] == 2
