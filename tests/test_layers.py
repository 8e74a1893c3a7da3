"""The layer diagram of docs/architecture.md is a contract ([tool.importlinter] in pyproject.toml) that the
imports keep: lint-imports checks it, here and in CI."""

import os
import shutil
import subprocess
import sys

from support import REPO


def _lint_imports(cwd, pythonpath):
    """lint-imports on the package found first on pythonpath, with the repository's contract."""
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        "--config",
        os.path.join(REPO, "pyproject.toml"),
        "--no-cache",
    ]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=pythonpath)
    )


def test_the_imports_keep_the_layer_contract():
    done = _lint_imports(REPO, REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_import_against_the_layers_breaks_the_contract(tmp_path):
    """The contract has teeth: the bucket importing the master (as job_store once imported the lease) fails it."""
    shutil.copytree(
        os.path.join(REPO, "luigi_kubeface"), tmp_path / "luigi_kubeface", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(tmp_path / "luigi_kubeface" / "bucket" / "layout.py", "a") as f:
        f.write("\nfrom ..master import lease  # noqa: E402,F401\n")
    done = _lint_imports(tmp_path, str(tmp_path))
    assert done.returncode != 0
    assert "luigi_kubeface.bucket.layout -> luigi_kubeface.master.lease" in done.stdout
