import os
import subprocess
import sys
import uuid

import pytest

from servers import FakeGCS, Luigid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests that take more than a few seconds")


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


def run_luigi(args, cwd, env=None, timeout=600):
    """Run the real `luigi` command with the repository's luigi.cfg, as a user would."""
    full_env = dict(os.environ, LUIGI_CONFIG_PATH=os.path.join(REPO, "luigi.cfg"),
                    PYTHONPATH=os.pathsep.join([TESTS, REPO, os.environ.get("PYTHONPATH", "")]))
    full_env.update(env or {})
    luigi = os.path.join(os.path.dirname(sys.executable), "luigi")
    return subprocess.run([luigi] + list(args), cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
