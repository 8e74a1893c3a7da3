"""Client.map from Jupyter: real notebooks executed by nbclient in a real ipykernel, on the local backend.

The kernel is this test run's interpreter (a kernel spec written for sys.executable), so it imports
the luigi-kubeface under test; each element still runs in a fresh runner process of its own.
"""

import glob
import json
import os
import queue
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from support import REPO, read_json, runners_of  # noqa: E402

KERNEL = "kubeface-test"
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel_spec(tmp_path, monkeypatch):
    """A kernel spec that runs this interpreter, found first on JUPYTER_PATH."""
    folder = tmp_path / "jupyter" / "kernels" / KERNEL
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "luigi-kubeface tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def execute(cells, cwd, kernel_name):
    """Run the cells in a fresh kernel, as `jupyter nbconvert --execute` does; the executed notebook."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name=kernel_name, resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook


def printed(cell):
    """What a cell printed to stdout, as one JSON value per line."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    return [json.loads(line) for line in text.splitlines() if line.startswith(("{", "["))]


def outcomes(root):
    """Every attempt record's outcome under root (each job's attempts/<element>/<attempt>.json)."""
    return [read_json(p)["outcome"] for p in glob.glob(os.path.join(root, "*", "attempts", "*", "*.json"))]


def setup_cell(root, extra=""):
    return (
        "import json, os\nimport numpy as np\nfrom luigi_kubeface import Client\n%s\n"
        "client = Client(storage_root=%r, poll_interval=0.05)" % (extra, str(root))
    )


CLASS_CELL = """class Scaler:
    bias = np.zeros(1, dtype=int)  # a class attribute that is not plain data: known by its statement

    def __init__(self, k):
        self.k = k

    def apply(self, x):
        return x * self.k + int(self.bias[0])"""

FUNCTION_CELL = """def work(x):
    return {"value": Scaler(3).apply(x) + int(offset[0]), "pid": os.getpid()}"""

MAP_CELL = """results = client.map(work, range(4))
print(json.dumps({"job": results.job.id, "kernel": os.getpid(), "results": list(results)}))"""


def test_a_notebook_run_twice_ships_its_cells_functions_and_classes_and_reuses_every_result(tmp_path, kernel_spec):
    """The function and the class live only in the kernel's cells; a second kernel running the same
    notebook finds every result under the same code version and starts no runner."""
    root = tmp_path / "jobs"
    cells = [setup_cell(root), CLASS_CELL, "offset = np.array([1])", FUNCTION_CELL, MAP_CELL]
    first = execute(cells, tmp_path, kernel_spec)
    (run,) = printed(first.cells[-1])
    assert [r["value"] for r in run["results"]] == [1, 4, 7, 10]
    pids = {r["pid"] for r in run["results"]}
    assert run["kernel"] not in pids and len(pids) == 4  # each element in a runner process of its own
    assert outcomes(root) == ["success"] * 4
    assert any(WIDGET in o.get("data", {}) for o in first.cells[-1].outputs)  # the progress bar is a widget

    second = execute(cells, tmp_path, kernel_spec)
    (rerun,) = printed(second.cells[-1])
    assert rerun["job"] == run["job"] and rerun["results"] == run["results"]  # the same runners' answers
    assert outcomes(root) == ["success"] * 4  # no attempt at all the second time


def test_editing_a_cell_the_function_loads_recomputes_and_running_a_cell_again_does_not(tmp_path, kernel_spec):
    """A value made in a cell (a NumPy array, not plain data; a class attribute too) counts by the statements
    that made it, as in a script: running its cell again keeps the code version, editing it recomputes.
    Without ipywidgets the progress bar is tqdm's text bar, in the cell's stderr."""
    root = tmp_path / "jobs"
    cells = [
        setup_cell(root, "import sys; sys.modules['ipywidgets'] = None  # as if it were not installed"),
        CLASS_CELL,
        "offset = np.array([1])",
        FUNCTION_CELL,
        MAP_CELL,
        "offset.shape",
        "print(offset.dtype, Scaler.bias)",  # only looking at values
        "offset = np.array([1])",
        CLASS_CELL,
        FUNCTION_CELL,
        MAP_CELL,  # the same cells run again
        "offset = np.array([2])",
        MAP_CELL,  # the value the function loads, edited
        CLASS_CELL.replace("np.zeros", "np.ones"),
        MAP_CELL,
    ]  # the class's attribute, edited
    notebook = execute(cells, tmp_path, kernel_spec)
    maps = [i for i, cell in enumerate(cells) if cell == MAP_CELL]
    first, again, edited, edited_class = (printed(notebook.cells[i])[0] for i in maps)
    assert again["job"] == first["job"] and [r["value"] for r in again["results"]] == [1, 4, 7, 10]
    assert edited["job"] != first["job"] and [r["value"] for r in edited["results"]] == [2, 5, 8, 11]
    assert edited_class["job"] != edited["job"] and [r["value"] for r in edited_class["results"]] == [3, 6, 9, 12]
    assert outcomes(root) == ["success"] * 12
    stderr = "".join(o.get("text", "") for o in notebook.cells[4].outputs if o.get("name") == "stderr")
    assert "4/4" in stderr and not any(WIDGET in o.get("data", {}) for o in notebook.cells[4].outputs)


def test_the_kernels_interrupt_stops_the_job_cleanly_and_a_rerun_runs_only_the_missing_elements(tmp_path, kernel_spec):
    """Interrupting the kernel (the notebook's stop button) mid-map: the cell ends in a KeyboardInterrupt,
    no runner is left, the finished results stay, and running the cell again computes only the rest."""
    from jupyter_client.manager import start_new_kernel

    root = tmp_path / "jobs"
    manager, kernel = start_new_kernel(kernel_name=kernel_spec, cwd=str(tmp_path))
    try:
        setup = setup_cell(root) + (
            "\nclient = Client(storage_root=%r, poll_interval=0.05, max_in_flight=2)\n"
            "import time\ndef slow(x):\n    time.sleep(1)\n    return x * 10\n" % str(root)
        )
        assert kernel.execute_interactive(setup, timeout=120)["content"]["status"] == "ok"
        message = kernel.execute("results = client.map(slow, range(12), job_id='slow')")
        deadline = time.time() + 120
        while len(glob.glob(str(root / "slow" / "results" / "*"))) < 3 and time.time() < deadline:
            time.sleep(0.1)
        manager.interrupt_kernel()
        reply = _reply(kernel, message)
        assert reply["status"] == "error" and reply["ename"] == "Interrupted"  # a KeyboardInterrupt (signals.py)
        assert "SIGINT" in reply["evalue"]
        assert runners_of(root) == []
        kept = outcomes(root).count("success")
        assert 3 <= kept < 12 and len(glob.glob(str(root / "slow" / "results" / "*"))) == kept
        assert "%d of 12 elements are done and kept: a rerun computes only the other %d" % (kept, 12 - kept) in _stderr(
            kernel, message
        )

        rerun = kernel.execute_interactive(
            "results = client.map(slow, range(12), job_id='slow')\nassert list(results) == [x * 10 for x in range(12)]",
            timeout=300,
            output_hook=lambda m: None,
        )
        assert rerun["content"]["status"] == "ok"
        assert outcomes(root).count("success") == 12  # each element succeeded once, over both runs
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)


def _stderr(kernel, message, timeout=60):
    """What the cell printed to stderr, read until the kernel is idle after it."""
    text, deadline = [], time.time() + timeout
    while time.time() < deadline:
        try:
            output = kernel.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if output["parent_header"].get("msg_id") != message:
            continue
        if output["msg_type"] == "stream" and output["content"]["name"] == "stderr":
            text.append(output["content"]["text"])
        if output["msg_type"] == "status" and output["content"]["execution_state"] == "idle":
            return "".join(text)
    raise AssertionError("the kernel was not idle after the interrupted cell in %ss" % timeout)


def _reply(kernel, message, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            reply = kernel.get_shell_msg(timeout=1)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == message:
            return reply["content"]
    raise AssertionError("the kernel did not answer the interrupted cell in %ss" % timeout)


@pytest.mark.slow
def test_the_example_notebook_runs(tmp_path, kernel_spec):
    """example_pipelines/model_selection.ipynb as a user runs it: its grid on the local backend, into pandas."""
    path = os.path.join(REPO, "example_pipelines", "model_selection.ipynb")
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name=kernel_spec, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    shown = "".join(o.get("data", {}).get("text/plain", "") for o in notebook.cells[-1].outputs)
    assert "accuracy" in shown and "random_forest" in shown
    assert outcomes(tmp_path / "kubeface-storage") == ["success"] * 6
