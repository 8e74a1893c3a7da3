"""Elements' inputs are written ahead of their launches, side by side (master/inputs_ahead.py): a bucket's
latency no longer caps the launch rate at one write at a time, and a write that fails still stops the run."""

import threading
import time

import pytest

from luigi_kubeface.bucket.job_store import JobStore
from luigi_kubeface.errors import StorageError
from test_engine_table import run


def _slow_input_writes(monkeypatch, fail_item=None):
    """Each input write takes 0.2 s (a far bucket); counts the most written at once."""
    state = {"now": 0, "most": 0, "written": []}
    lock = threading.Lock()
    write = JobStore.write_input

    def slow(self, element, *args, **kwargs):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(0.2)
            if element.label == str(fail_item):
                raise StorageError("the bucket refused the input of item %s" % fail_item)
            state["written"].append(element.label)
            return write(self, element, *args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(JobStore, "write_input", slow)
    return state


def test_inputs_are_written_side_by_side_ahead_of_their_launches_in_a_bucket(tmp_path, monkeypatch, gcs_root):
    state = _slow_input_writes(monkeypatch)
    job, _, report = run(tmp_path, n=24, max_in_flight=8, storage_root=gcs_root)
    assert report.progress.succeeded == 24 and not report.failures
    assert sorted(state["written"], key=int) == [str(i) for i in range(24)]  # each input once
    assert state["most"] > 1, "one input write at a time: the bucket's latency caps the launch rate"


def test_in_a_local_directory_each_input_is_written_where_the_engine_asks_for_it(tmp_path, monkeypatch):
    """Handing a write of well under a millisecond to a thread costs more than it saves."""
    state = _slow_input_writes(monkeypatch)
    _, _, report = run(tmp_path, n=6, max_in_flight=3)
    assert report.progress.succeeded == 6 and state["most"] == 1


@pytest.mark.parametrize("where", ["bucket", "local directory"])
def test_an_input_that_cannot_be_written_stops_the_run_with_the_storage_error(tmp_path, monkeypatch, gcs_root, where):
    _slow_input_writes(monkeypatch, fail_item=5)
    root = gcs_root if where == "bucket" else str(tmp_path / "storage")
    with pytest.raises(StorageError, match="refused the input of item 5"):
        run(tmp_path, n=12, max_in_flight=4, storage_root=root)
