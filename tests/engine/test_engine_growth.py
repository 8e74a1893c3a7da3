"""The engine hands each attempt its element's history: OOMs the backend answered with more memory, and
interruptions (preemptions), so a backend can grow the element's memory or move it off spot nodes."""

import pytest

from luigi_kubeface.backends.simulated import End

from test_engine_table import counts, records, run

OOM = End(
    exit_code=137,
    reason="OOMKilled with 1Gi; its next attempt gets 2Gi",
    error_type="OutOfMemory",
    more_memory=True,
    placement={"memory_limit": "1Gi"},
)


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
    ceiling = End(
        exit_code=137,
        reason="OOMKilled at the ceiling",
        error_type="OutOfMemory",
        retryable=False,
        placement={"memory_limit": "4Gi"},
    )
    job, backend, report = run(tmp_path, {(0, 1): ceiling}, retries=3)
    assert counts(report) == (0, 1, 0)
    assert records(job) == [("lost", "master", "OutOfMemory")]
    assert (
        job.store.attempt_record(job.elements[0].key, job.store.attempts(job.elements[0].key)[0])["memory_limit"]
        == "4Gi"
    )


def test_each_attempt_is_told_how_often_its_element_was_interrupted(tmp_path):
    preempted = End(
        reason="the pod was stopped by the cluster (DisruptionTarget)", error_type="PodEvicted", interrupted=True
    )
    job, backend, report = run(tmp_path, {(0, 1): preempted, (0, 2): preempted}, retries=0)
    assert counts(report) == (1, 0, 0)
    assert [spec.interruptions for spec in backend.launched] == [0, 1, 2]


def test_an_attempt_with_grown_memory_is_charged_the_memory_it_requested(tmp_path, monkeypatch):
    """A backend that grows an element's memory after each OOM (Kubernetes' oom_memory_factor) says so in
    its request: the grown attempt carries that request, and the run's cost charges it, not the job's."""
    import dataclasses

    from luigi_kubeface import backends, cost

    growing = dataclasses.replace(
        backends.backend_entry("local"), request=lambda settings, out_of_memory=0: cost.Request(1.0, 2.0**out_of_memory)
    )
    monkeypatch.setitem(backends.REGISTRY, "local", growing)
    job, backend, report = run(tmp_path, {(0, 1): OOM, (0, 2): OOM}, n=1, retries=0, duration=lambda spec: 36.0)
    assert [spec.resources["memory_gb"] for spec in backend.launched] == [1.0, 2.0, 4.0]
    assert report.cost.usage["succeeded"].gb_hours == pytest.approx(4.0 * 36.0 / 3600)  # the 4 GB attempt's


def test_a_pod_of_an_element_that_ran_out_of_memory_twice_requests_the_grown_memory():
    from luigi_kubeface.backends import attempt_request
    from luigi_kubeface.settings import Settings

    settings = Settings(
        backend="kubernetes",
        image="runner:1",
        storage_root="gs://bucket/jobs",
        memory_request="1Gi",
        memory_limit="2Gi",
        oom_memory_factor=2.0,
        max_memory_limit="16Gi",
    )
    assert attempt_request(settings).memory_gb == 1.0
    assert attempt_request(settings, 2).memory_gb == 4.0
