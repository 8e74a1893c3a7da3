"""The code version follows what the element function can reach: an edit it reaches recomputes, an edit
it cannot reach (another task's run(), a helper only a downstream task imports) recomputes nothing, and
where the analysis cannot be sure (getattr, exec, globals()...) the whole module counts."""

import glob
import os
import shutil
import sys

import pytest

from luigi_kubeface import code_package
from support import run_luigi
from test_code_shipping import make_project

HELP = '''
def twice(x):
    return 2 * x


def third(x):
    return x / 3


def unused(x):
    return x
'''

MAIN = '''
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
'''


def version(folder, monkeypatch, main=MAIN, helper=HELP):
    """The code version of Task().run_element after writing the project and importing it afresh."""
    make_project(folder, {"proj_main.py": main, "proj_help.py": helper})
    shutil.rmtree(os.path.join(folder, "__pycache__"), ignore_errors=True)  # same size, same second: stale
    monkeypatch.syspath_prepend(folder)
    for name in ("proj_main", "proj_help"):
        sys.modules.pop(name, None)
    module = __import__("proj_main")
    function = module.Task().run_element
    return code_package.code_version(function, code_package.build(["proj_main"]))


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


@pytest.mark.parametrize("dynamic", ["getattr(self, 'step')()", "globals()['LIMIT']", "eval('1')",
                                     "vars(proj_help)['third'](x)"])
def test_when_the_analysis_cannot_be_sure_the_whole_module_counts(dynamic, tmp_path, monkeypatch):
    main = MAIN.replace("+ WEIGHTS[0]", "+ WEIGHTS[0] + 0 * %s" % dynamic)
    before = version(str(tmp_path), monkeypatch, main)
    assert version(str(tmp_path), monkeypatch, main.replace("OTHER = 7", "OTHER = 8")) != before
    assert version(str(tmp_path), monkeypatch, main, HELP.replace("return x\n", "return x + 1\n")) != before


def test_a_star_import_counts_the_whole_module(tmp_path, monkeypatch):
    main = MAIN.replace("from proj_help import twice", "from proj_help import *")
    before = version(str(tmp_path), monkeypatch, main)
    assert version(str(tmp_path), monkeypatch, main.replace("OTHER = 7", "OTHER = 8")) != before
