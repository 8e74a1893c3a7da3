"""benchmarks/bench_rerun.py times a rerun with nothing to do: its seeding must produce results the rerun reuses.

It once seeded unsigned results without a code version, and its "rerun" recomputed all 50,000
elements. Here the benchmark's own seeding runs at 200 elements, then `luigi` runs the job again.
"""

import os
import sys

import luigi
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import bench_rerun  # noqa: E402
from bench_pipelines import TrivialMap  # noqa: E402


@pytest.fixture
def kubeface_config():
    """The benchmark points this process's [kubeface] section at its storage: put it back afterwards."""
    config = luigi.configuration.get_config()
    before = {name: config.get("kubeface", name, None) for name in ("storage_root", "key_dir")}
    yield
    for name, value in before.items():
        if value is None:
            config.remove_option("kubeface", name)
        else:
            config.set("kubeface", name, value)
    luigi.task_register.Register.clear_instance_cache()


def test_a_rerun_of_the_benchmarks_seeded_job_reuses_every_result_and_runs_nothing(tmp_path, kubeface_config):
    root, key_dir = str(tmp_path / "storage"), str(tmp_path / "keys")
    bench_rerun.use_storage(root, key_dir)
    job = bench_rerun.seed_finished_job(TrivialMap(n=200))
    assert len(job.store.finished()) == 200
    bench_rerun.check_reused(200, root, key_dir)  # a fresh map task in this process finds them all
    listed = sorted(job.storage.list(""))
    # `luigi` as a user runs it, on a backend that would run each element at once if it were asked to.
    bench_rerun.rerun(200, root, key_dir, ["--local-scheduler", "--kubeface-backend", "instant"], str(tmp_path))
    assert sorted(job.storage.list("")) == listed, "the rerun wrote something: it ran elements"
