"""Fixtures shared by every test: the real servers, each started once per session when a test asks for it."""

import os
import uuid

import pytest

from infra.cluster.fixtures import (  # noqa: F401 - the test Kubernetes clusters
    kube_cluster,
    kube_namespace,
    pod_network,
    stand_in_cluster,
    stand_in_namespace,
)
from infra.servers import FakeGCS, Luigid, MotoS3
from luigi_kubeface import Client
from luigi_kubeface.storage import REGISTRY, gcs, open_storage, s3_client
from support import FAST

# The environment boto3 reads in the tests, the master's and every runner's: moto takes any key.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@pytest.fixture
def make_client(tmp_path):
    """Clients on local storage in this test's tmp_path with the FAST settings, which settings override:
    make_client(**settings) stores in tmp_path itself, make_client("s", **settings) in tmp_path / "s"."""

    def make(folder=None, **settings):
        root = tmp_path / folder if folder else tmp_path
        return Client(**{"storage_root": str(root), **FAST, **settings})

    return make


@pytest.fixture
def client(make_client):
    """A Client storing in this test's tmp_path, with the FAST settings."""
    return make_client()


@pytest.fixture(params=sorted(REGISTRY))
def storage_root(request):
    """Each registered storage in turn, as a fresh root URL: its fixture is named after its scheme (file_root,
    gs_root, s3_root), so a storage added to the registry without a test server fails here."""
    return request.getfixturevalue(request.param + "_root")


@pytest.fixture
def storage(storage_root):
    """Each registered storage in turn, opened on a job's folder of a fresh root."""
    return open_storage(storage_root + "/job")


@pytest.fixture
def file_root(tmp_path):
    return str(tmp_path / "root")


@pytest.fixture
def gs_root(gcs_root):
    return gcs_root


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
    gcs._clients.clear()  # a client is bound to the emulator address it was made for: the next use makes one
    server.create_bucket("outage")
    yield server
    server.stop()
    gcs._clients.clear()


def _s3_environment(server):
    """boto3 (the tests', the master's and every local runner's) talks to this server."""
    previous = {name: os.environ.get(name) for name in [*S3_ENV, "AWS_ENDPOINT_URL_S3"]}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL_S3=server.url)
    s3_client.forget_clients()  # a client is bound to the endpoint it was made for
    return previous


def _restore(previous):
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    s3_client.forget_clients()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """One S3 server (moto) for the session on 127.0.0.1; boto3 finds it through AWS_ENDPOINT_URL_S3."""
    server = MotoS3(str(tmp_path_factory.mktemp("moto-s3"))).start()
    previous = _s3_environment(server)
    yield server
    server.stop()
    _restore(previous)


@pytest.fixture
def s3_root(moto_s3):
    """A fresh bucket per test, as a storage root URL."""
    bucket = "test-" + uuid.uuid4().hex[:12]
    moto_s3.create_bucket(bucket)
    return "s3://%s/jobs" % bucket


@pytest.fixture
def pod_s3(tmp_path, pod_network):
    """An S3 server of this test's own on the pod network's gateway, which the real node's pods reach (as
    fake_gcs does), holding the bucket `pods`; the master talks to it through AWS_ENDPOINT_URL_S3."""
    server = MotoS3(str(tmp_path / "pod-s3"), host=pod_network.gateway).start()
    previous = _s3_environment(server)
    server.create_bucket("pods")
    yield server
    server.stop()
    _restore(previous)


@pytest.fixture(scope="session")
def luigid(tmp_path_factory):
    server = Luigid(str(tmp_path_factory.mktemp("luigid"))).start()
    yield server
    server.stop()
