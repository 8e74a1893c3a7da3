"""The summary of each result that the runner writes into its attempt's outcome record (summary.py)."""

import json
import os

import numpy as np

from luigi_kubeface.runner.summary import MAX_BYTES, MAX_VALUES, describe
from support import read_json


def test_numbers_and_bools_are_their_own_summary():
    assert describe(0.98) == {"result_type": "float", "summary": {"value": 0.98}}
    assert describe(7) == {"result_type": "int", "summary": {"value": 7}}
    assert describe(True)["summary"] == {"value": True}
    assert describe(float("nan"))["summary"] == {"value": None}  # JSON has no NaN: null
    assert describe(float("-inf"))["summary"] == {"value": None}


def test_mappings_give_their_numeric_entries():
    assert describe({"accuracy": 0.98, "f1": 0.95}) == {
        "result_type": "dict",
        "result_size": 2,
        "summary": {"accuracy": 0.98, "f1": 0.95},
    }
    mixed = describe({"model": "svm", "accuracy": 0.9, "weights": [1, 2], 3: 1})
    assert mixed["summary"] == {"accuracy": 0.9, "3": 1}  # text and nested values stay in the result only
    assert describe({"model": "svm"}) == {"result_type": "dict", "result_size": 1}  # nothing numeric


def test_sequences_of_numbers_are_numbered():
    assert describe([0.5, 2, False])["summary"] == {"value[0]": 0.5, "value[1]": 2, "value[2]": False}
    assert describe((1.0,))["summary"] == {"value[0]": 1.0}
    assert "summary" not in describe([1, "two"])
    assert "summary" not in describe([])


def test_numpy_scalars_and_small_arrays_are_recognised_by_duck_typing():
    fields = describe({"accuracy": np.float64(0.75), "n": np.int32(3), "ok": np.bool_(True)})
    assert fields["summary"] == {"accuracy": 0.75, "n": 3, "ok": True}
    assert all(type(v) in (float, int, bool) for v in fields["summary"].values())  # plain JSON values
    assert describe(np.float32(0.5)) == {"result_type": "numpy.float32", "summary": {"value": 0.5}}
    assert describe(np.array([0.25, 0.5]))["summary"] == {"value[0]": 0.25, "value[1]": 0.5}
    big = describe(np.zeros((100, 3)))
    assert big == {"result_type": "numpy.ndarray", "result_size": 100}  # a matrix: its type and size
    json.dumps(fields)


def test_other_results_are_recorded_by_type_and_size():
    assert describe("a report") == {"result_type": "str", "result_size": 8}
    assert describe(b"\0" * 10) == {"result_type": "bytes", "result_size": 10}
    assert describe(None) == {"result_type": "NoneType"}

    class Model:
        pass

    assert describe(Model())["result_type"].endswith("Model") and "summary" not in describe(Model())

    class Broken(list):
        def __len__(self):
            raise RuntimeError("no length")

    assert describe(Broken())["result_type"].endswith("Broken")  # never raises


def test_oversized_summaries_are_left_out():
    assert "summary" in describe(list(range(MAX_VALUES)))
    assert "summary" not in describe(list(range(MAX_VALUES + 1)))
    assert "summary" not in describe({"m%d" % i: i for i in range(MAX_VALUES + 1)})
    long_names = {"a_very_long_metric_name_%s" % ("x" * 40 + str(i)): 0.123456789 for i in range(20)}
    assert len(json.dumps(long_names)) > MAX_BYTES
    assert describe(long_names) == {"result_type": "dict", "result_size": 20}


def scores(x):
    import numpy

    return {"accuracy": numpy.float64(x / 10), "label": "x%d" % x}


def test_the_runner_writes_the_summary_into_the_attempt_record(tmp_path, make_client):
    make_client().map(scores, [1, 2], job_id="summaries")
    folder = tmp_path / "summaries" / "attempts"
    records = [read_json(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files]
    assert sorted(r["summary"]["accuracy"] for r in records) == [0.1, 0.2]
    assert {r["result_type"] for r in records} == {"dict"} and {r["result_size"] for r in records} == {2}
