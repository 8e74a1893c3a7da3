"""ruff's lint and format ([tool.ruff] in pyproject.toml) pass on the package, the tests, the benchmarks and the
examples."""

import subprocess
import sys

from support import REPO


def test_ruff_finds_nothing():
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "luigi_kubeface", "tests", "benchmarks", "example_pipelines"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_tree_is_formatted():
    """`ruff format` leaves every file as it is: run it on what you changed when this fails."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--check",
            "luigi_kubeface",
            "tests",
            "benchmarks",
            "example_pipelines",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_catches_a_name_that_is_never_defined(tmp_path):
    """The check has teeth, with the project's own configuration."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return undefined_name\n")
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", REPO + "/pyproject.toml", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "F821" in done.stdout, done.stdout + done.stderr
