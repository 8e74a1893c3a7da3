"""records() and to_pandas() of collected results: parameters and summaries from attempt records."""

import builtins
import os

import pytest

from luigi_kubeface import Client
from luigi_kubeface.errors import ConfigurationError
from luigi_kubeface.views.result_table import COST_COLUMNS
from elements import square
from support import FAST, read_bytes


def train(params):
    return {"accuracy": 0.9 + params["c"] / 100 - (params["model"] == "svm") * 0.01, "c": params["c"] * 2}


def blob(x):
    return "text %d" % x


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    grid = [{"model": m, "c": c} for m in ("svm", "tree") for c in (1, 2, 3)]
    return Client(storage_root=str(tmp_path_factory.mktemp("results")), **FAST).map(train, grid, job_id="train")


def test_records_hold_parameters_and_summary_in_grid_order(trained):
    records = trained.records()
    assert [(r["model"], r["c"]) for r in records] == [(m, c) for m in ("svm", "tree") for c in (1, 2, 3)]
    assert records[0]["accuracy"] == pytest.approx(0.90) and records[5]["accuracy"] == pytest.approx(0.93)
    assert [r["result.c"] for r in records] == [2, 4, 6, 2, 4, 6]  # a value named like a parameter
    assert trained[2:4].records() == records[2:4]


def test_records_read_no_result(trained):
    folder = os.path.join(trained.job.url, "results")
    kept = {}
    for name in os.listdir(folder):  # every result unreadable: records() does not notice, loading would
        path = os.path.join(folder, name)
        kept[path] = read_bytes(path)
        with open(path, "wb") as f:
            f.write(b"not a result")
    try:
        assert [r["accuracy"] for r in trained.records()] == [r["accuracy"] for r in trained.records()]
        assert len(trained.records()) == 6 and all("accuracy" in r for r in trained.records())
    finally:
        for path, data in kept.items():
            with open(path, "wb") as f:
                f.write(data)


def without_cost(records):
    return [{k: v for k, v in r.items() if k not in COST_COLUMNS} for r in records]


def test_numbers_and_other_results(client):
    assert without_cost(client.map(square, [1, 2, 3]).records()) == [
        {"x": 1, "value": 1},
        {"x": 2, "value": 4},
        {"x": 3, "value": 9},
    ]
    assert without_cost(client.map(blob, [5]).records()) == [{"x": 5}]  # no numeric summary: the parameters alone
    assert list(client.map(blob, [5])) == ["text 5"]  # loading results is unchanged


def test_to_pandas_is_records_as_a_data_frame(trained):
    pandas = pytest.importorskip("pandas")
    frame = trained.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["model", "c", "accuracy", "result.c", *COST_COLUMNS] and len(frame) == 6
    assert frame.sort_values("accuracy", ascending=False).iloc[0].to_dict()["model"] == "tree"


def test_to_pandas_without_pandas_says_how_to_get_it(trained, monkeypatch):
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ConfigurationError, match="pip install pandas"):
        trained.to_pandas()
