"""Key files: a team key is bound to each job's URL, and only this user's private files are trusted."""

import os
import shutil

import pytest

from luigi_kubeface.bucket import layout as naming, blobs as serialization
from luigi_kubeface.errors import SigningKeyError, UntrustedBlobError
from luigi_kubeface.bucket.signing import KeyRing
from elements import square


def plus_thousand(x):
    return x + 1000


@pytest.fixture
def team(tmp_path):
    path = tmp_path / "team.key"
    path.write_text("cd" * 32)
    path.chmod(0o600)
    return str(path)


def test_a_team_signed_result_does_not_replay_into_another_storage_root(tmp_path, team, make_client):
    one = make_client("one", signing_key_file=team)
    two = make_client("two", signing_key_file=team)
    (key,) = one.map(square, [3], job_id="t", code_version="same").keys  # one code version for both roots
    assert list(two.map(plus_thousand, [3], job_id="t", code_version="same")) == [1003]
    result = naming.result_key(key, two.map(plus_thousand, [3], job_id="t", code_version="same").job.code_version)
    shutil.copy(tmp_path / "one" / "t" / result, tmp_path / "two" / "t" / result)  # same job id, same element
    with pytest.raises(UntrustedBlobError, match="not signed with this job's key"):
        two.map(plus_thousand, [3], job_id="t", code_version="same")[0]
    assert list(two.map(plus_thousand, [3], job_id="t", code_version="same")) == [1003]  # recomputed
    url = str(tmp_path / "two" / "t")
    assert KeyRing(signing_key_file=team).load(url) != KeyRing(signing_key_file=team).load(str(tmp_path / "one" / "t"))


def test_results_signed_with_the_team_key_itself_are_refused_with_the_reason(tmp_path, team, make_client):
    # reuse_results = any: results written before code versions existed are read, so the old key matters.
    client = make_client("s", signing_key_file=team, reuse_results="any")
    results = client.map(square, [4], job_id="old")
    (key,) = results.keys
    legacy = serialization.dumps(16, "result", {"element": key, "job": "old"}, bytes.fromhex("cd" * 32))
    (tmp_path / "s" / "old" / naming.result_key(key, results.job.code_version)).unlink()
    (tmp_path / "s" / "old" / naming.result_key(key)).write_bytes(legacy)  # as the previous release wrote it
    with pytest.raises(UntrustedBlobError, match="signed with the team key itself, as luigi-kubeface did before"):
        client.map(square, [4], job_id="old")[0]
    assert list(client.map(square, [4], job_id="old")) == [16]


def test_a_key_file_of_another_user_is_refused(tmp_path, team):
    ring = KeyRing(str(tmp_path / "keys"))
    ring.create("gs://b/j")
    for path in (ring.path("gs://b/j"), team):
        os.chmod(path, 0o640)
        os.chown(path, 4242, -1)  # the tests run as root; any other owner would do
    with pytest.raises(SigningKeyError, match="belongs to uid 4242, not to this user .*chown it"):
        ring.load("gs://b/j")
    with pytest.raises(SigningKeyError, match="belongs to uid 4242"):
        KeyRing(signing_key_file=team).load("gs://b/j")


def test_a_key_dir_others_may_write_is_refused(tmp_path):
    ring = KeyRing(str(tmp_path / "keys"))
    ring.create("gs://b/j")
    os.chmod(tmp_path / "keys", 0o777)
    with pytest.raises(SigningKeyError, match="writable by other users \\(mode 777\\).*chmod 700"):
        ring.load("gs://b/j")
    with pytest.raises(SigningKeyError, match="writable by other users"):
        ring.create("gs://b/k")
