"""The `kubeface` command reads unsigned job data (job.json, elements.json, records, logs): none of it commands it."""

import json
import os
import pty
import subprocess
import sys

import pytest

from luigi_kubeface import Client, JobFailedError
from luigi_kubeface.errors import ConfigurationError
from luigi_kubeface.settings import Settings
from support import FAST, REPO, TESTS, kubeface
from elements import square


def test_reproduce_quotes_its_docker_line_and_ignores_job_data_that_would_inject(tmp_path, capsys):
    root = tmp_path / "my bucket"  # a space: every part of the line must be quoted
    Client(storage_root=str(root), **FAST).map(square, [2, 3], job_id="inj")
    marker = tmp_path / "injected"
    meta_path, index_path = root / "inj" / "job.json", root / "inj" / "elements.json"
    meta_path.write_text(json.dumps(dict(json.loads(meta_path.read_text()), image="x$(touch %s)" % marker)))
    index = json.loads(index_path.read_text())
    key = index["keys"][0]
    index["keys"][1] = "0000;touch %s" % marker
    index_path.write_text(json.dumps(index))
    code, out = kubeface("reproduce", "inj", "@0", "--storage-root", str(root))
    assert code == 0, capsys.readouterr().err
    (line,) = [l for l in out.splitlines() if l.startswith("docker run")]
    bin_dir, argv_file = tmp_path / "bin", tmp_path / "argv"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text('#!/bin/sh\nfor a in "$@"; do printf "%%s\\n" "$a"; done > %s\n' % argv_file)
    (bin_dir / "docker").chmod(0o755)
    subprocess.run(
        ["bash", "-c", line], env=dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"])), check=True, timeout=30
    )
    assert not marker.exists()
    argv = argv_file.read_text().splitlines()
    job_url = str(root / "inj")
    assert argv[:4] == ["run", "--rm", "-v", "%s:%s" % (root, root)]
    assert argv[4] == "--env-file" and argv[6:11] == ["IMAGE", "python", "-m", "luigi_kubeface.runner", job_url]
    assert argv[11] == key and len(argv) == 13
    assert not any("SIGNING_KEY=" in a for a in argv)  # the key is in the 0600 file, not in ps
    code, out = kubeface("reproduce", "inj", "@1", "--storage-root", str(root))
    assert code == 2 and "docker run" not in out
    assert "is not an element key (24 lowercase hex characters): the job's elements.json was altered" in (
        capsys.readouterr().err
    )


def test_cleanup_acts_in_the_configured_namespace_not_the_one_job_json_names():
    from luigi_kubeface.backends.kubernetes.tools import cluster_target  # the decision, tested without a cluster

    settings = Settings(namespace="team")
    assert cluster_target({"namespace": "team"}, settings) == ("team", "")
    assert cluster_target({}, settings) == ("team", "")
    with pytest.raises(
        ConfigurationError,
        match="job.json says the job ran in namespace 'kube-system' .* settings "
        "say 'team' .*not signed.*pass --namespace kube-system",
    ):
        cluster_target({"namespace": "kube-system"}, settings)
    with pytest.raises(ConfigurationError, match="--kube-context prod"):
        cluster_target({"namespace": "team", "kube_context": "prod"}, settings)
    assert cluster_target({"namespace": "kube-system"}, settings, "kube-system") == ("kube-system", "")


def test_cleanup_follows_no_link_skips_malformed_jobs_and_deletes_only_its_own_keys(tmp_path, capsys):
    root, outside = tmp_path / "s", tmp_path / "outside"
    Client(storage_root=str(root), **FAST).map(square, [2], job_id="old")
    (root / "old" / "notes.txt").write_text("mine")
    (outside / "results").mkdir(parents=True)
    (outside / "job.json").write_text((root / "old" / "job.json").read_text())
    (outside / "results" / ("a" * 24 + ".pkl")).write_text("precious")
    (outside / "precious.txt").write_text("precious")
    os.symlink(outside, root / "linked")
    for name, meta in (("bad name", "{}"), ("broken", "[1]"), ("garbled", "{not json")):
        (root / name).mkdir()
        (root / name / "job.json").write_text(meta)
    code, out = kubeface("cleanup", "--older-than", "0s", "--blobs", "--yes", "--storage-root", str(root))
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in outside.rglob("*")) == ["a" * 24 + ".pkl", "job.json", "precious.txt", "results"]
    assert "deleted" in out and "job old" in out
    assert [p.name for p in (root / "old").rglob("*")] == ["notes.txt"]  # not ours: kept, with a warning
    assert "not luigi-kubeface's and are kept (e.g. notes.txt)" in err
    assert "skipping %s/bad name" % root in err and "skipping %s/broken" % root in err
    assert "skipping %s/garbled" % root in err
    code, _ = kubeface("cleanup", "linked", "--blobs", "--yes", "--storage-root", str(root))
    assert code == 2 and "is a symbolic link" in capsys.readouterr().err
    assert (outside / "precious.txt").exists()


def shouty(x):
    print("\x1b]52;c;ZXZpbA==\x07 hello from %d" % x)
    if x:
        raise ValueError("\x1b]0;owned title\x07 bad %d" % x)
    return x


def in_a_terminal(argv):
    """Run `kubeface` with a pseudo-terminal as stdout and stderr; what the terminal received."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "luigi_kubeface.cli"] + argv,
        stdout=slave,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    os.close(slave)
    received = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        received += chunk
    process.wait(timeout=60)
    os.close(master)
    return received.decode(errors="replace")


def test_escape_sequences_from_the_bucket_never_reach_a_terminal(tmp_path):
    root = tmp_path / "s"
    with pytest.raises(JobFailedError):
        Client(storage_root=str(root), retries=0, failure_budget=1.0, **FAST).map(shouty, [0, 1], job_id="esc")
    index_path = root / "esc" / "elements.json"
    index = json.loads(index_path.read_text())
    index["labels"][1] = "\x1b]0;label title\x07\x1b[2J1"
    index_path.write_text(json.dumps(index))
    status = in_a_terminal(["status", "esc", "--storage-root", str(root)])
    assert "bad 1" in status and "label title" in status
    logs = in_a_terminal(["logs", "esc", "@0", "--storage-root", str(root)])
    assert "hello from 0" in logs
    assert "\x1b" not in status + logs and "\x07" not in status + logs
    piped = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli", "logs", "esc", "@0", "--storage-root", str(root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS])),
        timeout=60,
    )
    assert "\x1b]52;c;ZXZpbA==\x07 hello from 0" in piped.stdout  # a pipe or file gets the log as it is


def negative_length(text):
    return -len(text)


def test_results_as_csv_never_hold_a_formula_a_spreadsheet_would_run(tmp_path):
    """Item 7 of the attack review: parameter or summary values starting with =, +, -, @ were written as they are."""
    import csv
    import io

    root = tmp_path / "s"
    items = ['=HYPERLINK("http://evil.example","x")', "=cmd|' /C calc'!A0", "@SUM(1+1)", "+1+1", "-1+1", "\tx", "plain"]
    Client(storage_root=str(root), **FAST).map(negative_length, items, job_id="csv")
    code, out = kubeface("results", "csv", "--storage-root", str(root), "--format", "csv")
    assert code == 0, out
    cells = [cell for row in csv.reader(io.StringIO(out)) for cell in row]
    formulas = [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or c[:1] == "-" and not c[1:].isdigit()]
    assert not formulas, formulas
    assert '\'=HYPERLINK("http://evil.example","x")' in cells and "plain" in cells
    assert str(-len(items[0])) in cells  # numbers stay numbers, negative ones too


def test_a_forged_released_lease_or_old_activity_does_not_let_cleanup_touch_a_running_job(tmp_path, capsys):
    """Hardening (issue 25): a forged "released" lease, or forged activity times, let cleanup act on a running job."""
    from luigi_kubeface.bucket import layout as naming
    from luigi_kubeface.bucket.job_store import JobStore
    from luigi_kubeface.master.lease import JobLease, read_lease

    root = tmp_path / "s"
    Client(storage_root=str(root), **FAST).map(square, [2], job_id="live")
    store = JobStore.at(str(root), "live")
    running = JobLease(store.storage, 30, "run-live", key=store.signing_key())  # a master runs the job now
    running.acquire()
    try:
        holder = read_lease(store.storage)[0]
        store.storage.write(naming.LEASE, json.dumps(dict(holder, released=1.0)).encode())  # forged: "released"
        for path in [
            root / "live" / "job.json",
            root / "live" / "progress.json",
            *(root / "live" / "dispatches").iterdir(),
        ]:  # forged activity: long ago
            if path.exists():
                path.write_text(json.dumps(dict(json.loads(path.read_text()), updated=1.0, finished=1.0)))
        code, _ = kubeface("cleanup", "live", "--blobs", "--yes", "--storage-root", str(root))
        assert code == 2 and "not signed by this job's key" in capsys.readouterr().err
        code, out = kubeface("cleanup", "--older-than", "1d", "--blobs", "--yes", "--storage-root", str(root))
        assert code == 0 and "skipping job live" in capsys.readouterr().err
        assert (root / "live" / "job.json").exists() and list((root / "live" / "results").iterdir())
    finally:
        running.release()
    code, out = kubeface("cleanup", "live", "--blobs", "--yes", "--storage-root", str(root))  # signed, released
    assert code == 0 and not (root / "live" / "job.json").exists()


def test_cleanup_removes_no_directory_through_a_link_swapped_in_while_it_prunes(tmp_path):
    """Hardening (issue 25): cleanup removed empty directories by path, so a directory swapped for a link got
    directories outside the job removed. A real process swaps logs/ for a link to outside/ over and over."""
    from luigi_kubeface.cli.cleanup import _prune_empty_directories

    job, outside = tmp_path / "s" / "job", tmp_path / "outside"
    names = ["e%03d" % i for i in range(200)]
    for name in names:
        (outside / name).mkdir(parents=True)
    code = (
        "import os, sys\nlogs, real, outside = sys.argv[1:]\nwhile True:\n"
        "    try:\n        os.rename(logs, real); os.symlink(outside, logs); os.unlink(logs); os.rename(real, logs)\n"
        "    except OSError:\n        pass\n"
    )
    for _ in range(15):
        for name in names:
            (job / "logs" / name).mkdir(parents=True, exist_ok=True)
        swapper = subprocess.Popen(
            [sys.executable, "-c", code, str(job / "logs"), str(job / "logs-real"), str(outside)]
        )
        try:
            _prune_empty_directories(str(job))
        finally:
            swapper.kill()
            swapper.wait()
        if (job / "logs-real").exists() and not (job / "logs").exists():
            os.rename(job / "logs-real", job / "logs")
        if (job / "logs").is_symlink():
            os.unlink(job / "logs")
        assert sorted(p.name for p in outside.iterdir()) == names, "a directory outside the job was removed"
        job.mkdir(parents=True, exist_ok=True)
