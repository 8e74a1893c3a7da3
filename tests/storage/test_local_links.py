"""Symbolic links planted in a local storage root are never followed: no read, write or delete leaves the root."""

import os

import pytest

from luigi_kubeface.errors import UnsafePathError
from luigi_kubeface.storage import open_storage


@pytest.fixture
def planted(tmp_path):
    """A storage root whose writer planted links to a secret file and to a directory outside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.key"
    secret.write_bytes(b"the master's key")
    root = tmp_path / "root"
    (root / "results").mkdir(parents=True)
    os.symlink(secret, root / "results" / "a.pkl")
    os.symlink(outside, root / "inputs")
    return open_storage(str(root)), outside


def test_reads_refuse_links(planted):
    storage, _ = planted
    with pytest.raises(UnsafePathError, match="results/a.pkl is a symbolic link .*never follows links .*remove it"):
        storage.read("results/a.pkl")
    with pytest.raises(UnsafePathError, match="inputs is a symbolic link"):
        storage.read("inputs/secret.key")


def test_writes_and_deletes_stay_inside_the_root(planted):
    storage, outside = planted
    with pytest.raises(UnsafePathError):
        storage.write("inputs/x.pkl", b"escaped")
    with pytest.raises(UnsafePathError):
        storage.write_if_absent("inputs/x.pkl", b"escaped")
    with pytest.raises(UnsafePathError):
        storage.delete("inputs/secret.key")
    assert sorted(os.listdir(outside)) == ["secret.key"]
    storage.write("results/a.pkl", b"replaced")  # replaces the link itself, never writes through it
    assert (outside / "secret.key").read_bytes() == b"the master's key"
    assert storage.read("results/a.pkl") == b"replaced"


def test_listings_do_not_descend_into_links(planted):
    storage, _ = planted
    assert storage.list("") == ["inputs", "results/a.pkl"]  # links are names, never directories
    assert storage.children("") == ["inputs", "results/"]
    assert storage.exists("results/a.pkl")
    with pytest.raises(UnsafePathError):
        storage.list("inputs/")


def test_a_planted_link_is_moved_aside_as_a_link(planted):
    storage, outside = planted
    storage.move("results/a.pkl", "quarantine/results/a.pkl.1-x")
    assert os.path.islink(os.path.join(storage.url, "quarantine/results/a.pkl.1-x"))
    assert (outside / "secret.key").read_bytes() == b"the master's key"


def test_a_job_prefix_swapped_for_a_link_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "root" / "job")
    storage = open_storage(str(tmp_path / "root" / "job"))
    with pytest.raises(UnsafePathError, match="root/job is a symbolic link: .*set storage_root to the link's target"):
        storage.write("inputs/a.pkl", b"escaped")
    assert os.listdir(tmp_path / "elsewhere") == []
