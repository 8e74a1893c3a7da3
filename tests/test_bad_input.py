"""The bad-input table, rows not covered elsewhere: each error is typed, names the cause and the fix.

Covered elsewhere: grid empty / not a list of mappings / duplicates / too large (test_job.py),
unknown backend or setting, missing storage root, unpicklable function or item, an element that
raises, exits, is killed or returns something unpicklable (test_client.py), missing bucket and
unwritable root at the storage level (storage/test_storage_contract.py).
"""

import glob
import os
import subprocess
import sys

import pytest

from luigi_kubeface import Client
from luigi_kubeface.bucket import blobs as serialization
from luigi_kubeface.errors import ConfigurationError, JobFailedError
from support import REPO, read_json
from elements import square


@pytest.fixture
def new_client(make_client, tmp_path):
    """Clients on tmp_path / "s" with signing keys of this test's own."""
    return lambda **values: make_client("s", key_dir=str(tmp_path / "keys"), **values)


def test_unpicklable_function_names_the_fix(tmp_path, new_client):
    import threading

    lock = threading.Lock()
    with pytest.raises(
        ConfigurationError,
        match="the element function .* cannot be pickled: TypeError.*"
        "Keep unpicklable state .* out of the task's attributes, or create it inside the function",
    ):
        new_client().map(lambda x: lock, [1])
    assert not glob.glob(str(tmp_path / "s" / "*" / "inputs"))  # refused before launch


def test_large_data_not_declared_shared_is_refused_before_upload(tmp_path, new_client):
    big = b"x" * (65 * 1024 * 1024)
    with pytest.raises(
        ConfigurationError,
        match="item 0 pickles to 65 MB, over the 64 MB limit .*"
        "pass large data once as a shared input .*shared= on Client.map",
    ):
        new_client().map(len, [big])
    assert not os.path.exists(tmp_path / "s")


def test_storage_root_not_writable_is_refused_before_launch(tmp_path, make_client):
    (tmp_path / "a-file").write_text("")  # not a directory: no process, root or not, can write under it
    with pytest.raises(
        ConfigurationError,
        match="storage root .*a-file cannot be written .*choose a writable directory with \\[kubeface\\] storage_root",
    ):
        make_client("a-file", key_dir=str(tmp_path / "keys")).map(square, [1])


def test_bucket_that_does_not_exist_is_refused_before_launch(fake_gcs, tmp_path):
    with pytest.raises(
        ConfigurationError,
        match="bucket gs://no-such-bucket-kf2 does not exist: create it "
        "\\(gcloud storage buckets create gs://no-such-bucket-kf2\\) or fix \\[kubeface\\] storage_root",
    ):
        Client(storage_root="gs://no-such-bucket-kf2/jobs", key_dir=str(tmp_path / "keys")).map(square, [1])


@pytest.mark.slow
def test_no_cloud_credentials(tmp_path):
    """No emulator, no key file, no gcloud login, no metadata server: a clear error, nothing launched."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
    }
    env.update(
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        PYTHONPATH=REPO,
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
    )  # port 9: nobody answers
    code = (
        "from luigi_kubeface import Client\n"
        "Client(storage_root='gs://some-bucket/jobs', key_dir=%r).map(abs, [1])\n" % str(tmp_path / "keys")
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("luigi_kubeface.errors.ConfigurationError: no Google Cloud credentials found")
    assert "run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS" in last


def test_runner_with_other_versions_exits_2_and_stops_the_job(tmp_path, monkeypatch, new_client):
    """The master's envelopes claim another Python and cloudpickle than the runner has."""
    real = serialization.versions()
    monkeypatch.setattr(serialization, "versions", lambda: {"python": "3.99", "cloudpickle": "0.1.0"})
    the_client = new_client(max_in_flight=1)
    with pytest.raises(JobFailedError) as caught:
        the_client.map(square, range(5), job_id="versions")
    text = str(caught.value)
    assert (
        "stopped early: VersionMismatchError" in text
        or "stopped early: luigi_kubeface.errors.VersionMismatchError" in text
    )
    assert (
        "the job's function (%s/versions/function.pkl) was pickled with Python 3.99 and cloudpickle 0.1.0, but "
        "this runner has Python %s and cloudpickle %s" % (tmp_path / "s", real["python"], real["cloudpickle"])
    ) in text
    assert "run elements in an environment (image) with the master's versions" in text
    assert "4 elements were not run" in text
    (path,) = glob.glob(str(tmp_path / "s" / "versions" / "attempts" / "*" / "*.json"))  # one attempt, then stop
    record = read_json(path)
    assert record["outcome"] == "unusable_input"

    # The same attempt run by hand exits 2: retrying it would not help.
    element, attempt = path.split(os.sep)[-2], os.path.basename(path)[: -len(".json")]
    from luigi_kubeface.bucket.signing import KeyRing

    key = KeyRing(str(tmp_path / "keys")).load(str(tmp_path / "s" / "versions"))
    env = dict(os.environ, PYTHONPATH=REPO, **{serialization.KEY_ENV: key.hex()})
    done = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.runner", str(tmp_path / "s" / "versions"), element, attempt + "x"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2


def odd_or_even_failure(x):
    if x % 2:
        raise KeyError("odd %d" % x)
    raise ValueError("even %d" % x)


def test_job_where_every_element_fails_stops_early_with_distinct_errors(tmp_path, new_client):
    the_client = new_client(retries=0, failure_budget=1.0, max_in_flight=2)
    with pytest.raises(JobFailedError) as caught:
        the_client.map(odd_or_even_failure, range(40), job_id="all-fail")
    text = str(caught.value)
    assert "stopped early: the first 10 elements to finish all failed" in text
    lines = [line.strip() for line in text.splitlines()]
    counted = [line for line in lines if " x KeyError: " in line or " x ValueError: " in line]
    assert len(counted) == 2  # one line per distinct error, however many elements hit it
    assert sum(int(line.split(" x ")[0]) for line in counted) >= 10
    ran = glob.glob(str(tmp_path / "s" / "all-fail" / "attempts" / "*" / "*.json"))
    assert len(ran) <= 12  # stopped after 10 failures plus what was in flight, out of 40
