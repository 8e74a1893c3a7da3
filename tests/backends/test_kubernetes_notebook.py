"""Client.map from a notebook onto the real node's pods: functions and classes defined in cells ship, a
second kernel reuses every result, and the kernel's interrupt leaves no pod behind."""

import json

import pytest

from kube_support import pods, wait_until
from luigi_kubeface.errors import JobNotFoundError
from luigi_kubeface.bucket.catalog import open_job
from test_notebooks import CLASS_CELL, MAP_CELL, _reply, execute, kernel_spec, printed  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


def client_cell(cluster, namespace, fake_gcs, storage_root, **values):
    """The cell that makes the notebook's Client for the test cluster (kube_support.kube_settings' values)."""
    settings = dict(
        backend="kubernetes",
        storage_root=storage_root,
        image=cluster.image,
        namespace=namespace,
        kubeconfig=cluster.master_kubeconfig,
        cpu_request="50m",
        memory_request="64Mi",
        memory_limit="2Gi",
        pod_env={"STORAGE_EMULATOR_HOST": fake_gcs.url, "GOOGLE_CLOUD_PROJECT": "test"},
        poll_interval=0.2,
        retry_backoff=0.5,
        unschedulable_patience=30,
        **values,
    )
    return (
        "import json, os, socket, time\nimport numpy as np\nfrom luigi_kubeface import Client\n"
        "client = Client(**json.loads(%r))" % json.dumps(settings)
    )


FUNCTION_CELL = """def work(x):
    return {"value": Scaler(3).apply(x) + int(offset[0]), "pid": os.getpid(), "host": socket.gethostname()}"""


def outcomes(storage_root, job_id):
    store = open_job(job_id, storage_root)
    return [store.attempt_record(key, a)["outcome"] for key, attempts in store.all_attempts().items() for a in attempts]


def test_a_notebook_runs_its_cells_function_on_pods_and_a_second_kernel_reuses_every_result(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path, kernel_spec
):
    cells = [
        client_cell(kube_cluster, kube_namespace, fake_gcs, gcs_root),
        CLASS_CELL,
        "offset = np.array([1])",
        FUNCTION_CELL,
        MAP_CELL + "\nprint(json.dumps({'host': socket.gethostname()}))",
    ]
    first = execute(cells, tmp_path, kernel_spec)
    run, where = printed(first.cells[-1])
    assert [r["value"] for r in run["results"]] == [1, 4, 7, 10]
    assert where["host"] not in {r["host"] for r in run["results"]}  # each ran in a pod (its hostname)
    assert outcomes(gcs_root, run["job"]) == ["success"] * 4

    second = execute(cells, tmp_path, kernel_spec)
    rerun, _ = printed(second.cells[-1])
    assert rerun["job"] == run["job"] and rerun["results"] == run["results"]
    assert outcomes(gcs_root, run["job"]) == ["success"] * 4  # no pod the second time
    wait_until(lambda: not pods(kube_cluster, kube_namespace), 30, "finished pods to be deleted")


def test_the_kernels_interrupt_deletes_the_jobs_pods_and_keeps_its_results(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path, kernel_spec
):  # noqa: F811
    from jupyter_client.manager import start_new_kernel

    manager, kernel = start_new_kernel(kernel_name=kernel_spec, cwd=str(tmp_path))
    try:
        setup = client_cell(kube_cluster, kube_namespace, fake_gcs, gcs_root, max_in_flight=2) + (
            "\ndef slow(x):\n    time.sleep(3)\n    return x * 10\n"
        )
        assert kernel.execute_interactive(setup, timeout=120)["content"]["status"] == "ok"
        message = kernel.execute("results = client.map(slow, range(8), job_id='slow')")
        wait_until(lambda: _succeeded(gcs_root) >= 2, 240, "two elements to finish on pods")
        manager.interrupt_kernel()
        reply = _reply(kernel, message, timeout=180)
        assert reply["status"] == "error" and reply["ename"] == "Interrupted" and "SIGINT" in reply["evalue"]
        wait_until(lambda: not pods(kube_cluster, kube_namespace), 60, "the interrupted job's pods to be deleted")
        kept = _succeeded(gcs_root)
        assert 2 <= kept < 8

        rerun = kernel.execute_interactive(
            "results = client.map(slow, range(8), job_id='slow')\nassert list(results) == [x * 10 for x in range(8)]",
            timeout=600,
            output_hook=lambda m: None,
        )
        assert rerun["content"]["status"] == "ok"
        assert outcomes(gcs_root, "slow").count("success") == 8  # each element succeeded once, over both runs
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)


def _succeeded(storage_root):
    try:
        return outcomes(storage_root, "slow").count("success")
    except JobNotFoundError:  # no job.json yet
        return 0
