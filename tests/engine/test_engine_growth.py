"""The engine hands each attempt its element's history: OOMs the backend answered with more memory, and
interruptions (preemptions), so a backend can grow the element's memory or move it off spot nodes."""

from luigi_kubeface.backends.simulated import End

from test_engine_table import counts, records, run

OOM = End(exit_code=137, reason="OOMKilled with 1Gi; its next attempt gets 2Gi", error_type="OutOfMemory",
          more_memory=True, placement={"memory_limit": "1Gi"})


def test_an_element_out_of_memory_runs_again_with_its_count_and_it_is_no_retry(tmp_path):
    job, backend, report = run(tmp_path, {(0, 1): OOM, (0, 2): OOM}, n=2, retries=0)
    assert counts(report) == (2, 0, 0)  # both succeeded, nothing counted against retries
    key = job.elements[0].key
    grown = [spec.out_of_memory for spec in backend.launched if spec.element == key]
    assert grown == [0, 1, 2]
    others = [spec.out_of_memory for spec in backend.launched if spec.element != key]
    assert others == [0]  # only that element grows
    assert records(job)[:2] == [("lost", "master", "OutOfMemory")] * 2
    first = job.store.attempt_record(key, job.store.attempts(key)[0])
    assert first["memory_limit"] == "1Gi" and "next attempt gets 2Gi" in first["message"]


def test_an_out_of_memory_end_the_backend_cannot_answer_fails_as_before(tmp_path):
    ceiling = End(exit_code=137, reason="OOMKilled at the ceiling", error_type="OutOfMemory", retryable=False,
                  placement={"memory_limit": "4Gi"})
    job, backend, report = run(tmp_path, {(0, 1): ceiling}, retries=3)
    assert counts(report) == (0, 1, 0)
    assert records(job) == [("lost", "master", "OutOfMemory")]
    assert job.store.attempt_record(job.elements[0].key, job.store.attempts(job.elements[0].key)[0])[
        "memory_limit"] == "4Gi"


def test_each_attempt_is_told_how_often_its_element_was_interrupted(tmp_path):
    preempted = End(reason="the pod was stopped by the cluster (DisruptionTarget)", error_type="PodEvicted",
                    interrupted=True)
    job, backend, report = run(tmp_path, {(0, 1): preempted, (0, 2): preempted}, retries=0)
    assert counts(report) == (1, 0, 0)
    assert [spec.interruptions for spec in backend.launched] == [0, 1, 2]
