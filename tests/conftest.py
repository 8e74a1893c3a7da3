import os
import uuid

import pytest

from support import FakeGCS, Luigid


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    """One fake-gcs-server for the session; the google client finds it through STORAGE_EMULATOR_HOST."""
    server = FakeGCS(str(tmp_path_factory.mktemp("fake-gcs"))).start()
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


@pytest.fixture(scope="session")
def luigid(tmp_path_factory):
    server = Luigid(str(tmp_path_factory.mktemp("luigid"))).start()
    yield server
    server.stop()
