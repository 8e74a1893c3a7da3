"""The `kubeface` command against real jobs: local backend, local storage and fake-gcs-server."""

import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time

import pytest

from luigi_kubeface import Client, JobFailedError
from luigi_kubeface.cli.common import parse_duration
from luigi_kubeface.errors import ConfigurationError
from support import FAST, REPO, kubeface, read_json, read_text, write_json, write_text


def odd_fails(x):
    print("computing", x)
    if x % 2:
        raise ValueError("x=%d is odd" % x)
    return x * x


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Storage with one real job: 6 elements, the 3 odd ones failed twice (retries=1)."""
    root = str(tmp_path_factory.mktemp("cli"))
    with pytest.raises(JobFailedError):
        Client(storage_root=root, retries=1, failure_budget=1.0, **FAST).map(odd_fails, range(6), job_id="odd")
    return root


def key_of(root, job_id, index):
    return read_json(os.path.join(root, job_id, "elements.json"))["keys"][index]


def test_list_shows_jobs_under_the_root(root):
    code, out = kubeface("list", "--storage-root", root)
    assert code == 0
    (line,) = [l for l in out.splitlines() if l.startswith("odd ")]
    assert line.split()[:3] == ["odd", "6", "3"]  # elements, done
    assert line.split()[-1] == "odd_fails"


def test_status_counts_failed_and_slowest_from_storage(root):
    code, out = kubeface("status", "odd", "--storage-root", root)
    assert code == 1  # elements failed
    assert "6 elements: 3 done, 3 failed, 0 cancelled, 0 unfinished, 0 not run; 9 attempts" in out
    failed = out.split("failed elements (3):")[1].split("slowest elements:")[0]
    assert "@1 " in failed and "2 attempt(s)  ValueError: x=1 is odd" in failed
    slowest = out.split("slowest elements:")[1]
    assert sorted(l.split()[2] for l in slowest.splitlines() if l.startswith("  @")) == ["0", "2", "4"]
    assert "status page: file://%s" % os.path.join(root, "odd", "status.html") in out


def test_status_of_a_job_url_and_unknown_jobs(root, capsys):
    code, out = kubeface("status", os.path.join(root, "odd"))
    assert code == 1 and "6 elements" in out
    code, _ = kubeface("status", "nope", "--storage-root", root)
    err = capsys.readouterr().err
    assert code == 2 and "kubeface status: no job nope" in err and "Run `kubeface list --storage-root %s`" % root in err


def test_logs_by_label_index_and_key_prefix(root, capsys):
    key = key_of(root, "odd", 3)
    for name in ("3", "@3", key[:6], key):
        code, out = kubeface("logs", "odd", name, "--storage-root", root)
        assert code == 0 and "computing 3" in out and "ValueError: x=3 is odd" in out
    assert "attempt 002-" in capsys.readouterr().err  # the last attempt by default
    code, out = kubeface("logs", "odd", "@3", "--attempt", "1", "--storage-root", root)
    assert code == 0 and "computing 3" in out
    assert "attempt 001-" in capsys.readouterr().err


def test_logs_errors_name_the_fix(root, capsys):
    assert kubeface("logs", "odd", "x=3", "--storage-root", root)[0] == 2
    assert "has no element 'x=3'" in capsys.readouterr().err
    assert kubeface("logs", "odd", "@9", "--storage-root", root)[0] == 2
    assert "@9 is out of range (use @0 to @5)" in capsys.readouterr().err
    assert kubeface("logs", "odd", "@0", "--attempt", "2", "--storage-root", root)[0] == 2
    assert "has no attempt 2: its attempts are 1 (001-" in capsys.readouterr().err


def fails_marked(x):
    print("failing in", os.environ.get("RUN_MARK"))
    raise ValueError("x=%d fails" % x)


def attempt_files(root, job_id):
    folder = os.path.join(root, job_id, "attempts")
    return sorted(name for element in os.listdir(folder) for name in os.listdir(os.path.join(folder, element)))


def fail_three_runs(root, job_id, monkeypatch):
    for run in (1, 2, 3):
        monkeypatch.setenv("RUN_MARK", "run-%d" % run)  # the local backend's runners inherit the master's environment
        with pytest.raises(JobFailedError):
            Client(storage_root=root, retries=0, **FAST).map(fails_marked, [5], job_id=job_id)


def test_attempts_are_numbered_across_runs_and_logs_takes_the_third(tmp_path, monkeypatch, capsys):
    root = str(tmp_path / "s")
    fail_three_runs(root, "thrice", monkeypatch)
    assert [name.split("-")[0] for name in attempt_files(root, "thrice")] == ["001", "002", "003"]
    code, out = kubeface("logs", "thrice", "@0", "--attempt", "3", "--storage-root", root)
    assert code == 0 and "failing in run-3" in out, out
    assert "attempt 003-" in capsys.readouterr().err
    code, out = kubeface("logs", "thrice", "@0", "--attempt", "1", "--storage-root", root)
    assert code == 0 and "failing in run-1" in out
    page = read_text(os.path.join(root, "thrice", "status.html"))
    assert [">#%d</a>" % n in page for n in (1, 2, 3)] == [True] * 3


def test_attempts_of_a_bucket_that_restarted_at_1_every_run_count_on_and_the_next_run_follows(
    tmp_path, monkeypatch, capsys
):
    """Main numbered every run's first attempt 1: its ids parse, list in time order as 1, 2, 3, and logs follows."""
    root = str(tmp_path / "s")
    fail_three_runs(root, "old", monkeypatch)
    for folder in ("attempts", "logs"):  # the bucket as main wrote it: 001-<time>-<hex> on every run
        for element in os.listdir(os.path.join(root, "old", folder)):
            where = os.path.join(root, "old", folder, element)
            for name in os.listdir(where):
                number, launched, suffix = name.split("-")
                os.rename(
                    os.path.join(where, name),
                    os.path.join(where, "001-%d-%s" % (int(launched) - 10 + int(number), suffix)),
                )
    assert [name.split("-")[0] for name in attempt_files(root, "old")] == ["001"] * 3
    code, out = kubeface("logs", "old", "@0", "--attempt", "3", "--storage-root", root)
    assert code == 0 and "failing in run-3" in out, out
    code, out = kubeface("logs", "old", "@0", "--attempt", "2", "--storage-root", root)
    assert code == 0 and "failing in run-2" in out, out
    code, out = kubeface("status", "old", "--storage-root", root)
    assert "3 attempt(s)" in out
    monkeypatch.setenv("RUN_MARK", "run-4")
    with pytest.raises(JobFailedError):
        Client(storage_root=root, retries=0, **FAST).map(fails_marked, [5], job_id="old")
    assert [name.split("-")[0] for name in attempt_files(root, "old")] == ["001"] * 3 + ["004"]
    code, out = kubeface("logs", "old", "@0", "--attempt", "4", "--storage-root", root)
    assert code == 0 and "failing in run-4" in out, out
    page = read_text(os.path.join(root, "old", "status.html"))
    assert [">#%d</a>" % n in page for n in (1, 2, 3, 4)] == [True] * 4


def wait_for(x, marker):
    import os
    import time

    print("waiting", x)
    while not os.path.exists(marker):
        time.sleep(0.05)
    print("released", x)
    return x


@pytest.mark.slow
def test_logs_follow_waits_for_a_running_attempt(tmp_path, capsys):
    root, marker = str(tmp_path / "s"), str(tmp_path / "go")
    client = Client(storage_root=root, **FAST)
    job = threading.Thread(target=lambda: client.map(wait_for, [7], job_id="follow", shared={"marker": marker}))
    job.start()
    try:
        deadline = time.monotonic() + 120
        while "running" not in kubeface("status", "follow", "--storage-root", root)[1]:
            assert time.monotonic() < deadline, "the master never wrote its running attempt to progress.json"
            time.sleep(0.1)  # the master's progress.json names the running attempt
        code, out = kubeface("status", "follow", "--storage-root", root)
        assert "1 elements: 0 done, 1 running" in out and "running now (master's counts" in out
        assert "running elements (1), longest first:\n  @0     " in out and "attempt 001-" in out
        code, out = kubeface("logs", "follow", "7", "--storage-root", root)
        assert code == 1  # not finished: no log yet, and not following
        assert "is running: its log reaches storage when it ends (add --follow" in capsys.readouterr().err
        result = {}
        follower = threading.Thread(
            target=lambda: result.update(
                zip(
                    ("code", "out"),
                    kubeface("logs", "follow", "@0", "--follow", "--poll", "0.1", "--storage-root", root),
                )
            )
        )
        follower.start()
        time.sleep(0.5)
        assert follower.is_alive()  # still waiting for the attempt to end
    finally:
        open(marker, "w").close()
        job.join(timeout=120)
    follower.join(timeout=60)
    assert result["code"] == 0 and "waiting 7" in result["out"] and "released 7" in result["out"]


def test_reproduce_runs_the_element_here(root, capsys):
    code, out = kubeface("reproduce", "odd", "4", "--storage-root", root)
    assert code == 0 and "result: 16" in out
    assert "computing 4" in capsys.readouterr().out  # the element ran in this process
    docker = [l for l in out.splitlines() if l.startswith("docker run")][0]
    assert (
        " IMAGE python -m luigi_kubeface.runner %s %s " % (os.path.join(root, "odd"), key_of(root, "odd", 4)) in docker
        and "# replace IMAGE" in out
    )
    assert "-v %s:%s" % (root, root) in docker


def test_reproduce_failure_and_pdb_in_a_real_terminal_session(root):
    # This test module is not importable from the repository's root: the job's shipped code is used.
    env = dict(os.environ, PYTHONPATH=REPO)
    run = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli", "reproduce", "odd", "@1", "--pdb", "--storage-root", root],
        input="p x * 100\nquit\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert run.returncode == 1
    assert "ValueError: x=1 is odd" in run.stderr and "in odd_fails" in run.stderr
    assert "(Pdb) 100" in run.stdout  # post-mortem in the element's frame
    code, out = kubeface("reproduce", "odd", "@1", "--storage-root", root, "--image", "registry.example/kubeface:v7")
    assert code == 1 and "rerun with --pdb" in out
    docker = [l for l in out.splitlines() if l.startswith("docker run")][0]
    assert docker.startswith("docker run --rm -v %s:%s --env-file " % (root, root))
    assert "registry.example/kubeface:v7 python -m luigi_kubeface.runner" in docker
    env_file = docker.split("--env-file ", 1)[1].split(" ", 1)[0]
    assert oct(os.stat(env_file).st_mode & 0o777) == "0o600"
    (line,) = read_text(env_file).splitlines()
    name, key = line.split("=")
    assert name == "KUBEFACE_SIGNING_KEY" and len(key) == 64 and key not in out  # never printed


def test_cleanup_is_a_dry_run_until_yes(tmp_path):
    root = str(tmp_path)
    Client(storage_root=root, **FAST).map(odd_fails, [0, 2], job_id="old")
    Client(storage_root=root, **FAST).map(odd_fails, [4], job_id="kept")
    code, out = kubeface("cleanup", "old", "--blobs", "--storage-root", root)
    assert code == 0 and "would delete" in out and "dry run: nothing was deleted" in out
    assert os.path.exists(os.path.join(root, "old", "job.json"))
    code, out = kubeface("cleanup", "old", "--storage-root", root, "--yes")
    assert "its blobs are kept (add --blobs" in out and os.path.exists(os.path.join(root, "old", "job.json"))
    code, out = kubeface("cleanup", "old", "--blobs", "--yes", "--storage-root", root)
    assert code == 0 and "deleted" in out and not os.path.exists(os.path.join(root, "old"))
    assert "old" not in kubeface("list", "--storage-root", root)[1]
    code, out = kubeface("cleanup", "--older-than", "1h", "--blobs", "--yes", "--storage-root", root)
    assert "no job under %s has been idle for 1h or longer" % root in out and os.path.exists(os.path.join(root, "kept"))
    code, out = kubeface("cleanup", "--older-than", "0s", "--blobs", "--storage-root", root)
    assert "would delete" in out and "job kept" in out


def test_cleanup_older_than_with_only_recent_jobs_says_none_has_been_idle_that_long(tmp_path):
    root = str(tmp_path)
    for job_id in ("monday", "tuesday"):
        Client(storage_root=root, **FAST).map(odd_fails, [0], job_id=job_id)
    code, out = kubeface("cleanup", "--older-than", "7d", "--blobs", "--yes", "--storage-root", root)
    assert code == 0 and out.strip() == (
        "no job under %s has been idle for 7d or longer (2 jobs, each active within the last 7d): nothing to clean up"
        % root
    )
    assert os.path.exists(os.path.join(root, "monday", "job.json"))


def test_durations_and_argument_errors(capsys):
    assert parse_duration("90s") == 90 and parse_duration("12h") == 43200 and parse_duration("7d") == 604800
    with pytest.raises(ConfigurationError, match="e.g. 90s, 30m, 12h, 7d"):
        parse_duration("a week")
    assert kubeface("cleanup")[0] == 2
    assert "cleanup takes a JOB or --older-than DURATION" in capsys.readouterr().err


def test_storage_root_comes_from_luigi_cfg(root, tmp_path):
    config = tmp_path / "luigi.cfg"
    config.write_text("[kubeface]\nstorage_root = %s\n" % root)
    env = dict(os.environ, PYTHONPATH=REPO, LUIGI_CONFIG_PATH=str(config))
    run = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli", "status", "odd"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=120,
    )
    assert run.returncode == 1 and "6 elements: 3 done, 3 failed" in run.stdout


@pytest.mark.slow
def test_commands_on_gcs(gcs_root, capsys):
    with pytest.raises(JobFailedError):
        Client(storage_root=gcs_root, retries=0, failure_budget=1.0, **FAST).map(odd_fails, range(4), job_id="g")
    code, out = kubeface("list", "--storage-root", gcs_root)
    assert code == 0 and out.splitlines()[1].split()[:3] == ["g", "4", "2"]
    code, out = kubeface("status", gcs_root + "/g")
    assert "4 elements: 2 done, 2 failed" in out
    assert "status page: https://storage.cloud.google.com/%s/g/status.html" % gcs_root[len("gs://") :] in out
    code, out = kubeface("logs", gcs_root + "/g", "@3")
    assert code == 0 and "ValueError: x=3 is odd" in out
    code, out = kubeface("reproduce", "g", "2", "--storage-root", gcs_root)
    assert code == 0 and "result: 4" in out and "runner %s/g " % gcs_root in out
    code, out = kubeface("cleanup", "g", "--blobs", "--yes", "--storage-root", gcs_root)
    assert code == 0 and "deleted" in out
    assert "no jobs under" in kubeface("list", "--storage-root", gcs_root)[1]


def test_status_distrusts_a_silent_master(root):
    live = os.path.join(root, "odd", "progress.json")
    saved = read_text(live)
    key = key_of(root, "odd", 1)
    try:
        write_json(
            {
                "updated": time.time() - 3600,
                "final": False,
                "counts": {"running": 1},
                "running": {"002-1-abc": [key, time.time() - 3700]},
            },
            live,
        )
        code, out = kubeface("status", "odd", "--storage-root", root)
        assert "; it may have stopped" in out and "0 running" not in out.splitlines()[2]
        assert "running elements" not in out and "3 failed" in out
    finally:
        write_text(live, saved)


def always_fails(x):
    raise KeyError(x)


def test_elements_a_stopped_job_never_ran(tmp_path, capsys):
    root = str(tmp_path)
    with pytest.raises(JobFailedError, match="stopped early"):
        Client(storage_root=root, retries=0, failure_budget=0.1, max_in_flight=1, **FAST).map(
            always_fails, range(12), job_id="stopped"
        )
    code, out = kubeface("status", "stopped", "--storage-root", root)
    assert code == 1 and "12 elements: 0 done, 2 failed, 0 cancelled, 0 unfinished, 10 not run; 2 attempts" in out
    assert kubeface("reproduce", "stopped", "@11", "--storage-root", root)[0] == 2
    assert (
        "has no input in storage: inputs are uploaded when an element's first attempt launches"
        in capsys.readouterr().err
    )
    assert kubeface("logs", "stopped", "@11", "--storage-root", root)[0] == 1
    assert "has no attempts yet" in capsys.readouterr().err


@pytest.mark.slow
def test_commands_on_a_luigi_map_task(tmp_path, capsys):
    from support import run_luigi

    root = str(tmp_path / "storage")
    run = run_luigi(
        [
            "--module",
            "pipelines.toy",
            "Squares",
            "--n",
            "4",
            "--mode",
            "raise",
            "--bad",
            "[2]",
            "--local-scheduler",
            "--kubeface-storage-root",
            root,
            "--kubeface-retries",
            "0",
            "--kubeface-failure-budget",
            "1",
            "--kubeface-poll-interval",
            "0.1",
        ],
        cwd=tmp_path,
    )
    assert run.returncode == 30, run.stderr[-3000:]
    code, out = kubeface("list", "--storage-root", root)
    (job_id,) = [line.split()[0] for line in out.splitlines()[1:]]
    assert job_id.startswith("pipelines.toy.Squares_4_")  # the module, then the task id
    code, out = kubeface("status", job_id, "--storage-root", root)
    assert "4 elements: 3 done, 1 failed" in out and "ValueError: x=2 is bad on purpose" in out
    assert "last run " in out and "3 succeeded, 1 failed" in out
    code, out = kubeface("logs", job_id, "x=2", "--storage-root", root)
    assert code == 0 and "element x=2 starting" in out
    code, out = kubeface("reproduce", job_id, "x=3", "--storage-root", root)  # the task's run_element, here
    assert code == 0 and "result: 9" in out
    code, out = kubeface("reproduce", job_id, "x=2", "--storage-root", root)
    assert code == 1 and "ValueError: x=2 is bad on purpose" in capsys.readouterr().err


def test_cleanup_older_than_spares_a_job_whose_master_is_alive(tmp_path):
    root = str(tmp_path)
    Client(storage_root=root, **FAST).map(odd_fails, [0], job_id="long")
    meta_path = os.path.join(root, "long", "job.json")
    meta = read_json(meta_path)
    write_json(dict(meta, updated=time.time() - 5 * 86400), meta_path)  # dispatched 5 days ago
    shutil.rmtree(os.path.join(root, "long", "dispatches"))  # as while its master runs: no run summary yet
    code, out = kubeface("cleanup", "--older-than", "1d", "--storage-root", root)
    assert "no job under" in out  # its progress.json was written just now
    os.unlink(os.path.join(root, "long", "progress.json"))
    code, out = kubeface("cleanup", "--older-than", "1d", "--storage-root", root)
    assert "would delete 0 pods of job long" in out


def test_malformed_records_are_skipped_and_named_everything_else_shown(tmp_path, capsys):
    from luigi_kubeface.views.job_state import JobState
    from luigi_kubeface.bucket.catalog import open_job
    from luigi_kubeface.views.status_writer import write_page

    root = str(tmp_path)
    with pytest.raises(JobFailedError):
        Client(storage_root=root, retries=0, failure_budget=1.0, **FAST).map(odd_fails, range(4), job_id="torn")
    job_dir = os.path.join(root, "torn")
    odd = key_of(root, "torn", 1)
    (record,) = os.listdir(os.path.join(job_dir, "attempts", odd))
    torn = os.path.join(job_dir, "attempts", odd, record)
    text = read_text(torn)
    write_text(torn, text[: len(text) // 2])  # cut short, as by a writer killed mid-write
    shutil.rmtree(os.path.join(job_dir, "dispatches"))  # Client.map's own run summary: this test writes its runs
    os.makedirs(os.path.join(job_dir, "dispatches"))
    write_json(
        {"run": "20240101T000000Z-good", "started": 1, "finished": 2, "succeeded": 2},
        os.path.join(job_dir, "dispatches", "20240101T000000Z-good.json"),
    )
    write_text(os.path.join(job_dir, "dispatches", "20990101T000000Z-bad.json"), "{not json")
    code, out = kubeface("status", "torn", "--storage-root", root)
    assert code == 1, out
    assert "4 elements: 2 done, 1 failed, 0 cancelled, 1 unfinished" in out
    assert "skipped attempts/%s/%s: " % (odd, record) in out and "is not valid JSON" in out
    assert "skipped dispatches/20990101T000000Z-bad.json" in out
    assert "last run 20240101T000000Z-good" in out
    code, out = kubeface("logs", "torn", "@1", "--storage-root", root)
    assert code == 0 and "ValueError: x=1 is odd" in out
    code, out = kubeface("reproduce", "torn", "@2", "--storage-root", root)
    assert code == 0 and "result: 4" in out
    state = JobState(open_job(os.path.join(root, "torn")))
    write_page(state)  # the status page keeps refreshing, and says what it skipped
    page = read_text(os.path.join(job_dir, "status.html"))
    assert "2 records could not be read and were skipped" in page and record in page

    write_text(os.path.join(job_dir, "job.json"), '{"job": "torn", "elem')
    code, out = kubeface("list", "--storage-root", root)
    (line,) = [l for l in out.splitlines() if l.startswith("torn ")]
    assert "job.json is not a valid JSON record" in line
    code, out = kubeface("status", "torn", "--storage-root", root)
    assert code == 1 and "skipped job.json: " in out and "4 elements: 2 done, 1 failed" in out
    capsys.readouterr()


@pytest.mark.slow
def test_status_after_a_rerun_that_found_every_result_names_the_run_that_computed_them(tmp_path):
    from support import run_luigi

    root = str(tmp_path / "storage")
    args = [
        "--module",
        "pipelines.toy",
        "Squares",
        "--n",
        "2",
        "--local-scheduler",
        "--kubeface-storage-root",
        root,
        "--kubeface-poll-interval",
        "0.1",
    ]
    run = run_luigi(args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    (job_id,) = os.listdir(root)
    # A later master whose map task found every result (another master computed them) dispatches
    # nothing: its only record is the map task's bookkeeping, written as tasks.py did before that
    # flag had its own key (luigi/<run>.json): such buckets must still read.
    from luigi_kubeface.bucket import layout as naming

    with open(os.path.join(root, job_id, naming.dispatch_key(naming.new_run_id().replace("T", "T9", 1))), "w") as f:
        json.dump({"elements_shown": True}, f, indent=1)
    assert len(os.listdir(os.path.join(root, job_id, "dispatches"))) == 2
    code, out = kubeface("status", job_id, "--storage-root", root)
    assert code == 0 and "last run None" not in out
    assert "last run 20" in out and "2 succeeded" in out


def test_reproduce_finds_the_signing_key_where_luigi_cfg_keeps_it(tmp_path):
    root, keys, team_key = str(tmp_path / "s"), tmp_path / "keys", tmp_path / "team.key"
    Client(storage_root=root, key_dir=str(keys), **FAST).map(odd_fails, [2], job_id="own-dir")
    team_key.write_text(secrets.token_hex(32) + "\n")  # the team's one key, as the README says to make it
    team_key.chmod(0o600)
    Client(storage_root=root, signing_key_file=str(team_key), **FAST).map(odd_fails, [4], job_id="team")
    for job_id, setting, expected in (
        ("own-dir", "key_dir = %s" % keys, "result: 4"),
        ("team", "signing_key_file = %s" % team_key, "result: 16"),
    ):
        config = tmp_path / ("%s.cfg" % job_id)
        config.write_text("[kubeface]\nstorage_root = %s\n%s\n" % (root, setting))
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]), LUIGI_CONFIG_PATH=str(config)
        )
        run = subprocess.run(
            [sys.executable, "-m", "luigi_kubeface.cli", "reproduce", job_id, "@0"],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(tmp_path),
            timeout=120,
        )
        assert run.returncode == 0 and expected in run.stdout, run.stdout + run.stderr


def test_status_into_a_closed_pipe_exits_quietly(root):
    env = dict(os.environ, PYTHONPATH=REPO)
    reader = subprocess.Popen(
        [sys.executable, "-m", "luigi_kubeface.cli", "status", "odd", "--storage-root", root],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    reader.stdout.close()  # like `| head -1` that has read its line: every write meets a closed pipe
    with reader.stderr:
        err = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_cleanup_of_a_read_only_root_says_what_failed_and_the_fix(tmp_path):
    root = str(tmp_path / "s")
    Client(storage_root=root, **FAST).map(odd_fails, [0, 2], job_id="ro")
    command = [sys.executable, "-m", "luigi_kubeface.cli", "cleanup", "ro", "--blobs", "--yes", "--storage-root", root]
    env = dict(os.environ, PYTHONPATH=REPO)
    if os.geteuid() == 0:  # permissions do not stop root: a read-only mount of the root does
        command = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', root] + command
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    else:
        for directory, _, _ in os.walk(root):
            os.chmod(directory, 0o555)
        try:
            run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        finally:
            for directory, _, _ in os.walk(root):
                os.chmod(directory, 0o755)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "kubeface cleanup: cannot delete %s/" % os.path.join(root, "ro") in run.stderr
    assert "0 of " in run.stderr and "Make the storage writable for this user" in run.stderr
    assert os.path.exists(os.path.join(root, "ro", "job.json"))


def test_results_table_ranks_done_elements_and_lists_failed_ones_last(root):
    code, out = kubeface("results", "odd", "--storage-root", root)
    assert code == 0
    lines = out.splitlines()
    assert "best first on value (highest first)" in lines[0]
    assert lines[1].split() == ["#", "x", "value", "state", "duration", "code_version"]
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [("4", "4"), ("2", "2"), ("0", "0"), ("1", "1"), ("3", "3"), ("5", "5")]
    assert [r[2] for r in rows[:3]] == ["16", "4", "0"] and [r[2] for r in rows[3:]] == ["failed"] * 3
    code, out = kubeface("results", "odd", "--storage-root", root, "--ascending", "--top", "2")
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["0", "2"]


def test_results_as_csv_and_json(root):
    import csv

    code, out = kubeface("results", "odd", "--storage-root", root, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["x"], r["value"], r["state"]) for r in rows] == [
        ("4", "16", "done"),
        ("2", "4", "done"),
        ("0", "0", "done"),
        ("1", "", "failed"),
        ("3", "", "failed"),
        ("5", "", "failed"),
    ]
    assert float(rows[0]["duration"]) >= 0 and len(rows[0]["code_version"]) >= 12 and rows[3]["duration"]
    code, out = kubeface("results", "odd", "--storage-root", root, "--format", "json", "--sort", "value", "--top", "4")
    rows = json.loads(out)
    assert [(r["params"], r["summary"], r["state"]) for r in rows] == [
        ({"x": 4}, {"value": 16}, "done"),
        ({"x": 2}, {"value": 4}, "done"),
        ({"x": 0}, {"value": 0}, "done"),
        ({"x": 1}, {}, "failed"),
    ]
    assert rows[3]["error"] == "ValueError: x=1 is odd" and len(rows[0]["element"]) == 24


def timed(duration, state, code_version, k):
    return {"score": k * 1.5, "duration": duration * 2}


def test_results_columns_are_unique_in_every_format_and_parameters_keep_their_names(tmp_path):
    """Parameters named like the tool's own columns (state, duration, code_version), a value named like one."""
    import csv

    root = str(tmp_path)
    grid = [dict(duration=d, state=s, code_version="v%d" % d, k=d + 10) for d, s in ((1, "fresh"), (2, "stale"))]
    Client(storage_root=root, **FAST).map(lambda kw: timed(**kw), grid, job_id="clash")
    code, out = kubeface("results", "clash", "--storage-root", root, "--format", "csv")
    assert code == 0
    header = next(csv.reader(io.StringIO(out)))
    assert header == [
        "#",
        "duration",
        "state",
        "code_version",
        "k",
        "score",
        "result.duration",
        "element.state",
        "element.duration",
        "element.code_version",
    ]
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["duration"], r["state"], r["code_version"], r["result.duration"], r["element.state"]) for r in rows] == [
        ("2", "stale", "v2", "4", "done"),
        ("1", "fresh", "v1", "2", "done"),
    ]
    assert all(len(r["element.code_version"]) >= 12 for r in rows)
    code, out = kubeface("results", "clash", "--storage-root", root)
    (table_header,) = [line.split() for line in out.splitlines() if line.startswith("#")]
    assert table_header == header
    code, out = kubeface("results", "clash", "--storage-root", root, "--format", "json")
    assert [(r["params"]["state"], r["summary"]["duration"], r["state"]) for r in json.loads(out)] == [
        ("stale", 4, "done"),
        ("fresh", 2, "done"),
    ]
    page = read_text(os.path.join(root, "clash", "status.html"))  # its Results table names them alike
    assert (
        "<th>duration</th><th>state</th><th>code_version</th><th>k</th><th>score</th><th>result.duration</th>"
        "<th>element.duration</th>" in page
    )


def test_results_sorted_on_an_unknown_value_names_the_known_ones(root, capsys):
    code, _ = kubeface("results", "odd", "--storage-root", root, "--sort", "accuracy")
    assert (
        code == 2
        and "no element's result has a value named 'accuracy': the results have value" in capsys.readouterr().err
    )


def minimize_me(params):
    return {"loss": (params["lr"] - 0.1) ** 2, "steps": params["steps"]}


def test_results_follow_the_metric_and_direction_the_job_names(tmp_path, make_client):
    grid = [{"lr": lr, "steps": s} for lr in (0.01, 0.1, 1.0) for s in (10, 20)]
    make_client(result_metric="loss", result_direction="minimize").map(minimize_me, grid, job_id="tuned")
    code, out = kubeface("results", "tuned", "--storage-root", str(tmp_path), "--format", "json")
    assert [r["params"]["lr"] for r in json.loads(out)][:2] == [0.1, 0.1]  # the lowest loss first
    code, out = kubeface("results", "tuned", "--storage-root", str(tmp_path), "--format", "json", "--sort", "steps")
    assert [r["summary"]["steps"] for r in json.loads(out)][:3] == [20, 20, 20]
