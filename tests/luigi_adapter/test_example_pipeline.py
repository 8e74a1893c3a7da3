"""The example pipeline through the real `luigi` command: first run, rerun, partial loss, extension."""

import glob
import os

import pytest

from support import run_luigi, read_json

MODULE = ["--module", "example_pipelines.model_selection"]


def attempts(root):
    return sorted(glob.glob(os.path.join(root, "*", "attempts", "*", "*.json")))


def results(root):
    return sorted(glob.glob(os.path.join(root, "*", "results", "*.pkl")))


@pytest.mark.slow
def test_first_run_rerun_partial_loss_and_extension(tmp_path):
    root = str(tmp_path / "storage")
    flags = ["--local-scheduler", "--kubeface-storage-root", root]

    first = run_luigi(MODULE + ["PickBest"] + flags, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    report = read_json(glob.glob(str(tmp_path / "example-output" / "*.json"))[0])
    assert report["elements"] == 12
    assert report["best"]["accuracy"] > 0.9
    assert [r["model"] for r in report["ranking"]].count("svm") == 4
    assert len(results(root)) == 12 and len(attempts(root)) == 12

    second = run_luigi(MODULE + ["PickBest"] + flags, cwd=tmp_path)
    assert second.returncode == 0
    assert "Did not run any tasks" in second.stderr
    assert len(attempts(root)) == 12  # no element work at all

    lost = results(root)[3:5]
    for path in lost:
        os.unlink(path)
    third = run_luigi(MODULE + ["TrainModels"] + flags, cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    lost_elements = {os.path.basename(p).split(".")[0] for p in lost}  # <element>.<code version>.pkl
    recomputed = [p for p in attempts(root) if os.path.basename(os.path.dirname(p)) in lost_elements]
    assert len(attempts(root)) == 14 and len(recomputed) == 4  # exactly those 2 elements ran again
    assert all(os.path.exists(p) for p in lost)
    assert "10 already done, 2 to run" in third.stderr

    extended = '["nearest_neighbors","svm","logistic_regression","random_forest"]'
    fourth = run_luigi(MODULE + ["PickBest", "--models", extended] + flags, cwd=tmp_path)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert "12 already done, 4 to run" in fourth.stderr
    assert len(attempts(root)) == 18 and len(results(root)) == 16
