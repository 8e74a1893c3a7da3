"""The code version follows what the element function can reach: an edit it reaches recomputes, an edit
it cannot reach (another task's run(), a helper only a downstream task imports) recomputes nothing, and
where the analysis cannot be sure (getattr, exec, globals()...) the whole module counts."""

import glob
import io
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from luigi_kubeface.job.code import discover as code_discover, version as code_versions
from support import REPO, run_luigi
from test_code_shipping import make_project

HELP = """
def twice(x):
    return 2 * x


def third(x):
    return x / 3


def unused(x):
    return x
"""

MAIN = """
import proj_help
from proj_help import twice

LIMIT = 3
TABLE = {"a": [1, 2]}
OTHER = 7
WEIGHTS = bytearray([1, 2])


def unrelated():
    return OTHER


class Model:
    def fit(self):
        return LIMIT


class Task:
    def run_element(self, x):
        return twice(x) + proj_help.third(x) + Model().fit() + self.step() + TABLE["a"][0] + WEIGHTS[0]

    def step(self):
        return 1

    def run(self):
        return unrelated()
"""


def version(folder, monkeypatch, main=MAIN, helper=HELP):
    """The code version of Task().run_element after writing the project and importing it afresh."""
    make_project(folder, {"proj_main.py": main, "proj_help.py": helper})
    shutil.rmtree(os.path.join(folder, "__pycache__"), ignore_errors=True)  # same size, same second: stale
    monkeypatch.syspath_prepend(folder)
    for name in ("proj_main", "proj_help"):
        sys.modules.pop(name, None)
    module = __import__("proj_main")
    function = module.Task().run_element
    return code_versions.code_version(function, code_discover.build(["proj_main"]))


UNREACHED = {
    "another method's body": ("main", "return unrelated()", "return unrelated() + 1"),
    "a value only another method uses": ("main", "OTHER = 7", "OTHER = 8"),
    "a helper function it does not call": ("help", "return x\n", "return x + 1\n"),
    "a comment and lines above it": ("main", "LIMIT = 3", "# the limit\n\n\nLIMIT = 3  # three"),
}
REACHED = {
    "a method of self's class it calls": ("main", "return 1", "return 2"),
    "a constant it uses": ("main", '"a": [1, 2]', '"a": [5, 2]'),
    "a constant a class it names uses": ("main", "LIMIT = 3", "LIMIT = 4"),
    "a function it imported from a helper": ("help", "return 2 * x", "return 3 * x"),
    "a function of a module it uses": ("help", "return x / 3", "return x / 4"),
    "a value that is not plain data": ("main", "bytearray([1, 2])", "bytearray([3, 2])"),
}


def edited(which, old, new):
    main, helper = MAIN, HELP
    if which == "main":
        assert old in main
        main = main.replace(old, new)
    else:
        assert old in helper
        helper = helper.replace(old, new)
    return main, helper


@pytest.mark.parametrize("what", sorted(UNREACHED))
def test_an_edit_the_function_cannot_reach_keeps_the_version(what, tmp_path, monkeypatch):
    before = version(str(tmp_path), monkeypatch)
    main, helper = edited(*UNREACHED[what])
    assert version(str(tmp_path), monkeypatch, main, helper) == before


@pytest.mark.parametrize("what", sorted(REACHED))
def test_an_edit_the_function_reaches_changes_the_version(what, tmp_path, monkeypatch):
    before = version(str(tmp_path), monkeypatch)
    main, helper = edited(*REACHED[what])
    assert version(str(tmp_path), monkeypatch, main, helper) != before


@pytest.mark.parametrize(
    "dynamic", ["getattr(self, 'step')()", "globals()['LIMIT']", "eval('1')", "vars(proj_help)['third'](x)"]
)
def test_when_the_analysis_cannot_be_sure_the_whole_module_counts(dynamic, tmp_path, monkeypatch):
    main = MAIN.replace("+ WEIGHTS[0]", "+ WEIGHTS[0] + 0 * %s" % dynamic)
    before = version(str(tmp_path), monkeypatch, main)
    assert version(str(tmp_path), monkeypatch, main.replace("OTHER = 7", "OTHER = 8")) != before
    assert version(str(tmp_path), monkeypatch, main, HELP.replace("return x\n", "return x + 1\n")) != before


def test_a_star_import_counts_the_whole_module(tmp_path, monkeypatch):
    main = MAIN.replace("from proj_help import twice", "from proj_help import *")
    before = version(str(tmp_path), monkeypatch, main)
    assert version(str(tmp_path), monkeypatch, main.replace("OTHER = 7", "OTHER = 8")) != before


PIPELINE = """
import luigi
from luigi_kubeface import KubefaceMapTask
import scoring
import report_format

SCALE = 10


def helper(i):
    return i * SCALE


class Train(KubefaceMapTask):
    def grid(self):
        return [dict(i=i) for i in range(3)]

    def run_element(self, i):
        return helper(i) + scoring.bonus(i)


class Other(KubefaceMapTask):
    def grid(self):
        return [dict(j=j) for j in range(2)]

    def run_element(self, j):
        return j + 1


class Report(luigi.Task):
    def requires(self):
        return [Train(), Other()]

    def output(self):
        return luigi.LocalTarget("report.txt")

    def run(self):
        train, other = self.input()
        with self.output().open("w") as f:
            f.write(report_format.line(list(train.load()) + list(other.load())))
"""
PROJECT = {
    "reach_pipeline.py": PIPELINE,
    "scoring.py": "from constants import BONUS\n\n\ndef bonus(i):\n    return BONUS\n",
    "constants.py": "BONUS = 100\n",
    "report_format.py": "def line(values):\n    return ' '.join(str(round(v, 4)) for v in values)\n",
}


def report(folder, storage, edit=None):
    """Apply an edit (file, old, new), run the pipeline through `luigi`; (report, attempts per map task)."""
    if edit:
        path = os.path.join(folder, edit[0])
        with open(path) as f:
            text = f.read()
        assert edit[1] in text
        make_project(folder, {edit[0]: text.replace(edit[1], edit[2])})
        shutil.rmtree(os.path.join(folder, "__pycache__"), ignore_errors=True)
    flags = [
        "--local-scheduler",
        "--workers",
        "1",
        "--kubeface-storage-root",
        storage,
        "--kubeface-key-dir",
        os.path.join(folder, "keys"),
        "--kubeface-poll-interval",
        "0.05",
    ]
    done = run_luigi(["--module", "reach_pipeline", "Report"] + flags, cwd=folder, env={"PYTHONPATH": folder})
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(folder, "report.txt")) as f:
        text = f.read()
    os.unlink(os.path.join(folder, "report.txt"))
    return text, {
        task: len(glob.glob(os.path.join(storage, "*" + task + "_*", "attempts", "*", "*.json")))
        for task in ("Train", "Other")
    }


@pytest.mark.slow
def test_through_luigi_only_edits_run_element_reaches_recompute(tmp_path):
    folder, storage = str(tmp_path / "project"), str(tmp_path / "storage")
    make_project(folder, PROJECT)
    assert report(folder, storage) == ("100 110 120 1 2", {"Train": 3, "Other": 2})
    # A module only the downstream task's run() imports, and that run() itself: nothing recomputes.
    assert report(folder, storage, ("report_format.py", "round(v, 4)", "round(v, 3)")) == (
        "100 110 120 1 2",
        {"Train": 3, "Other": 2},
    )
    assert report(folder, storage, ("reach_pipeline.py", "list(other.load())", "list(other.load())[::-1]")) == (
        "100 110 120 2 1",
        {"Train": 3, "Other": 2},
    )
    # Another map task's run_element: that task only.
    assert report(folder, storage, ("reach_pipeline.py", "return j + 1", "return j + 5")) == (
        "100 110 120 6 5",
        {"Train": 3, "Other": 4},
    )
    # What Train.run_element reaches: a constant it uses, a helper's constant two imports away.
    assert report(folder, storage, ("reach_pipeline.py", "SCALE = 10", "SCALE = 20")) == (
        "100 120 140 6 5",
        {"Train": 6, "Other": 4},
    )
    assert report(folder, storage, ("constants.py", "BONUS = 100", "BONUS = 7")) == (
        "7 27 47 6 5",
        {"Train": 9, "Other": 4},
    )


MAIN_COMMIT = "8190ff3"  # main before the code version followed what run_element reaches


def main_release(tmp_path):
    """luigi_kubeface as main had it, unpacked from the repository's history, to put first on PYTHONPATH."""
    release = tmp_path / "main-release"
    archive = subprocess.run(["git", "-C", REPO, "archive", MAIN_COMMIT, "luigi_kubeface"], capture_output=True)
    if archive.returncode:
        pytest.skip("needs the repository's history: git archive %s failed" % MAIN_COMMIT)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(release)
    return release


MAP = """
import glob, sys
from luigi_kubeface import Client
import mapped
print(list(Client(storage_root=sys.argv[1], key_dir=sys.argv[2], poll_interval=0.05).map(mapped.f, [1, 2])))
print(len(glob.glob(sys.argv[1] + "/f-*/attempts/*/*.json")))
"""


def test_client_map_finds_the_job_main_named_by_its_code(tmp_path):
    release = main_release(tmp_path)
    folder, storage = str(tmp_path / "project"), str(tmp_path / "storage")
    make_project(folder, {"mapped.py": "def f(x):\n    return x * 3\n"})
    args = [sys.executable, "-c", MAP, storage, str(tmp_path / "keys")]
    for path, attempts in ((os.pathsep.join([folder, str(release)]), 2), (folder, 2)):
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=300, cwd=folder, env=dict(os.environ, PYTHONPATH=path)
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split("\n")[:2] == ["[3, 6]", str(attempts)]


@pytest.mark.slow
def test_results_main_computed_count_for_the_same_code(tmp_path):
    """A bucket written by main's release: rerun with this one and unchanged code, nothing recomputes."""
    release = main_release(tmp_path)
    folder, storage = str(tmp_path / "project"), str(tmp_path / "storage")
    make_project(folder, PROJECT)
    flags = [
        "--local-scheduler",
        "--workers",
        "1",
        "--kubeface-storage-root",
        storage,
        "--kubeface-key-dir",
        os.path.join(folder, "keys"),
        "--kubeface-poll-interval",
        "0.05",
    ]
    by_main = run_luigi(
        ["--module", "reach_pipeline", "Report"] + flags,
        cwd=folder,
        env={"PYTHONPATH": os.pathsep.join([folder, str(release)])},
    )
    assert by_main.returncode == 0, by_main.stderr[-3000:]
    os.unlink(os.path.join(folder, "report.txt"))
    assert report(folder, storage) == ("100 110 120 1 2", {"Train": 3, "Other": 2})  # this release: all reused
    status = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli", "status", glob.glob(os.path.join(storage, "Train*"))[0]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "(current) 3" in status.stdout, status.stdout
    # The first edit after the upgrade: what Train.run_element reaches recomputes Train; Other's results of
    # main's version counted only while every shipped source was main's (README: Changing your code).
    assert report(folder, storage, ("constants.py", "BONUS = 100", "BONUS = 1")) == (
        "1 11 21 1 2",
        {"Train": 6, "Other": 4},
    )
    assert report(folder, storage, ("constants.py", "BONUS = 1", "BONUS = 2")) == (
        "2 12 22 1 2",
        {"Train": 9, "Other": 4},
    )
