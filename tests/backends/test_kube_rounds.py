"""A round's pod creates and deletes go out side by side (sending.py): the engine waits one round trip per
round, not one per pod, so a master can keep 200 short pods busy."""

import pytest

from kube_support import kube_settings, pods, wait_until
from luigi_kubeface.backends import AttemptSpec
from luigi_kubeface.backends.kubernetes.backend import KubernetesBackend
from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.bucket.signing import KeyRing
from luigi_kubeface.job.definition import Job, elements_from_items

pytestmark = pytest.mark.slow


def test_twelve_launches_are_created_in_one_round_and_deleted_at_close_in_one_round(
    kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path
):
    settings = kube_settings(
        kube_cluster,
        kube_namespace,
        fake_gcs,
        gcs_root,
        key_dir=str(tmp_path / "keys"),
        node_selector={"no-such-node": "x"},
    )  # pods no node takes: nothing runs
    job = Job(
        "rounds",
        settings.storage_root,
        abs,
        elements_from_items(list(range(12))),
        keys=KeyRing(key_dir=str(tmp_path / "keys")),
        settings=settings,
    )
    job.prepare(details=settings.job_details())
    backend = KubernetesBackend(settings)
    try:
        for element in job.elements:
            job.store.write_input(element, job.shared_keys, job.code_version)
            backend.launch(
                AttemptSpec(
                    job.id,
                    job.url,
                    element.key,
                    naming.new_attempt_id(1),
                    element.label,
                    secret_env=job.store.secret_env(),
                )
            )
        assert backend.sender.rounds == 0  # launch only queues: the next poll sends the round
        assert backend.poll() == []
        assert (backend.sender.rounds, backend.sender.requests) == (1, 12)
        wait_until(lambda: len(pods(kube_cluster, kube_namespace)) == 12, 60, "the 12 pods")
    finally:
        backend.close()
    assert (backend.sender.rounds, backend.sender.requests) == (2, 24)
    assert all(p["metadata"].get("deletionTimestamp") for p in pods(kube_cluster, kube_namespace))
