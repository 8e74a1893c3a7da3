"""mypy on the pure modules ([tool.mypy] in pyproject.toml): the decision tables, the records, the bucket's
layout, storage and cost keep the types their annotations say."""

import os
import subprocess
import sys

from support import REPO


def test_the_pure_modules_type_check():
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", os.path.join(REPO, "pyproject.toml"), "--no-incremental"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_a_wrong_type_in_a_pure_module_fails_the_check(tmp_path):
    """The check has teeth: a record field given a string where the code says a float fails it."""
    bad = tmp_path / "bad.py"
    bad.write_text("from luigi_kubeface.bucket.records import RunSummary\n\nRunSummary(started='yesterday')\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--ignore-missing-imports",
            "--follow-imports=silent",
            "--no-incremental",
            str(bad),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, MYPYPATH=REPO),
    )
    assert done.returncode == 1 and "incompatible type" in done.stdout.lower(), done.stdout + done.stderr
