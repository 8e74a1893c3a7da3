"""Fixtures shared by every test: the real servers, each started once per session when a test asks for it."""

import os
import uuid

import pytest

from infra.cluster.fixtures import (  # noqa: F401 - the test Kubernetes clusters
    kube_cluster, kube_namespace, pod_network, stand_in_cluster, stand_in_namespace)
from infra.servers import FakeGCS, Luigid
from luigi_kubeface.storage import gcs


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory, pod_network):
    """One fake-gcs-server for the session; the google client finds it through STORAGE_EMULATOR_HOST. It listens
    on the pod network's gateway, which the machine and the real node's pods both reach."""
    server = FakeGCS(str(tmp_path_factory.mktemp("fake-gcs")), host=pod_network.gateway).start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.url
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "test")
    yield server
    server.stop()
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)


@pytest.fixture
def gcs_root(fake_gcs):
    """A fresh bucket per test, as a storage root URL."""
    bucket = "test-" + uuid.uuid4().hex[:12]
    fake_gcs.create_bucket(bucket)
    return "gs://%s/jobs" % bucket


@pytest.fixture
def own_gcs(tmp_path, monkeypatch, pod_network):
    """A fake-gcs-server of this test's own, holding the bucket `outage`, for a test that stops and starts it
    (its filesystem backend keeps the data across a restart). The master and every runner talk to it."""
    server = FakeGCS(str(tmp_path / "own-gcs"), host=pod_network.gateway).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    gcs.forget_client()  # a client is bound to the emulator address it was made for
    server.create_bucket("outage")
    yield server
    server.stop()
    gcs.forget_client()


@pytest.fixture(scope="session")
def luigid(tmp_path_factory):
    server = Luigid(str(tmp_path_factory.mktemp("luigid"))).start()
    yield server
    server.stop()
