"""A whole map task through `luigi` with its storage in a real (emulated) GCS bucket."""

from support import run_luigi


def test_pipeline_on_gcs_and_rerun(tmp_path, gcs_root):
    args = [
        "--module",
        "pipelines.toy",
        "SumSquares",
        "--n",
        "8",
        "--local-scheduler",
        "--kubeface-storage-root",
        gcs_root,
        "--kubeface-poll-interval",
        "0.1",
    ]
    first = run_luigi(args, cwd=tmp_path)  # STORAGE_EMULATOR_HOST reaches the master and every runner
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "sum-8.txt").read_text() == str(sum(x * x for x in range(8)))

    from luigi_kubeface.storage import open_storage

    storage = open_storage(gcs_root)
    (job,) = {k.split("/")[0] for k in storage.list("")}
    assert len(storage.list(job + "/results/")) == 8
    assert len(storage.list(job + "/logs/")) == 8

    (tmp_path / "sum-8.txt").unlink()
    second = run_luigi(args, cwd=tmp_path)
    assert second.returncode == 0
    assert len(storage.list(job + "/attempts/")) == 8  # every element reused
