"""The job's signing key reaches attempts privately (a pipe locally): never argv, environ, logs, records or the bucket."""

import logging
import os
import subprocess

from luigi_kubeface import Client
from luigi_kubeface.bucket import blobs as serialization
from luigi_kubeface.backends import AttemptSpec
from luigi_kubeface.bucket.signing import KeyRing
from support import run_luigi


def nosy(x):
    """An element that looks for the key everywhere it could leak from, and prints what it sees."""
    print(dict(os.environ))
    os.system("env; cat /proc/$PPID/cmdline")
    with open("/proc/self/cmdline", "rb") as f:
        argv = f.read().decode()
    child_env = subprocess.run(["env"], capture_output=True, text=True).stdout
    return {
        "argv": argv,
        "in_env": serialization.KEY_ENV in os.environ,
        "in_child_env": serialization.KEY_ENV in child_env,
    }


def files_containing(root, text):
    hits = []
    for directory, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(directory, name), "rb") as f:
                if text.encode() in f.read():
                    hits.append(os.path.join(directory, name))
    return hits


def test_key_is_in_no_log_record_result_argv_or_master_log(tmp_path, caplog):
    root, keys = tmp_path / "s", tmp_path / "keys"
    caplog.set_level(logging.DEBUG, logger="luigi_kubeface")
    (seen,) = Client(storage_root=str(root), key_dir=str(keys), poll_interval=0.05).map(nosy, [1], job_id="nosy")
    key = KeyRing(str(keys)).load(str(root / "nosy")).hex()
    assert "luigi_kubeface.runner" in seen["argv"] and key not in seen["argv"]
    assert not seen["in_env"] and not seen["in_child_env"]  # the runner took it out before the element ran
    assert files_containing(str(root), key) == []  # logs, attempt records, job.json, inputs, results
    assert key not in caplog.text
    assert key not in repr(AttemptSpec("j", "u", "e", "a", secret_env={serialization.KEY_ENV: key}))
    (log,) = (root / "nosy" / "logs").rglob("*.log")
    assert "luigi_kubeface.runner" in log.read_text()  # the log did capture the environment and argv


def test_key_is_not_in_luigi_output(tmp_path):
    root, keys = tmp_path / "storage", tmp_path / "keys"
    result = run_luigi(
        [
            "--module",
            "pipelines.toy",
            "Squares",
            "--n",
            "2",
            "--local-scheduler",
            "--kubeface-storage-root",
            str(root),
            "--kubeface-key-dir",
            str(keys),
            "--kubeface-poll-interval",
            "0.1",
            "--log-level",
            "DEBUG",
        ],
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (key_file,) = keys.iterdir()
    (job,) = os.listdir(root)
    key = KeyRing(str(keys)).load(str(root / job)).hex()
    assert key in key_file.read_text()
    assert key not in result.stdout + result.stderr
    assert files_containing(str(root), key) == []


def environ_of_this_process(x):
    """What the element (or any child, or same-user reader of /proc) finds in the runner's initial environment."""
    with open("/proc/self/environ", "rb") as f:
        return f.read().decode(errors="replace")


def test_key_is_not_in_the_runners_proc_environ(tmp_path):
    root, keys = tmp_path / "s", tmp_path / "keys"
    (environ,) = Client(storage_root=str(root), key_dir=str(keys), poll_interval=0.05).map(
        environ_of_this_process, [1], job_id="proc"
    )
    key = KeyRing(str(keys)).load(str(root / "proc")).hex()
    assert "LUIGI_CONFIG_PATH" in environ or "PATH=" in environ  # the file was read
    assert key not in environ
