"""Which result of an element counts is decided from the run's one listing of results/: checking each
element that finished in the run must not list results/ again (that made the master quadratic in N)."""

from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.bucket.job_store import JobStore
from luigi_kubeface.bucket.result_store import Counting


class CountingStorage:
    """The job's real storage, with its listings counted."""

    def __init__(self, storage):
        self.storage, self.listings = storage, 0

    def list(self, prefix):
        self.listings += 1
        return self.storage.list(prefix)

    def __getattr__(self, name):
        return getattr(self.storage, name)


def _store(tmp_path):
    store = JobStore(str(tmp_path / "root" / "job-1"), counting=Counting("new", "old"))
    store.storage = CountingStorage(store.storage)
    return store


def _file(store, key, version):
    store.storage.write(naming.result_key(key, version), b"x")


def test_elements_finished_after_the_listing_are_checked_without_listing_results_again(tmp_path):
    store = _store(tmp_path)
    _file(store, "a", "old")
    versions = store.result_versions()
    assert versions == {"a": {"old"}} and store.storage.listings == 1
    for i in range(50):  # this run's attempts file results of this code
        _file(store, "e%d" % i, "new")
        assert store.result_version("e%d" % i, versions) == "new"
    assert store.storage.listings == 1


def test_a_result_of_the_code_as_tagged_before_still_counts_from_the_listing(tmp_path):
    store = _store(tmp_path)
    _file(store, "a", "old")
    versions = store.result_versions()
    assert store.result_version("a", versions) == "old"
    assert store.storage.listings == 1


def test_without_a_listing_the_element_s_own_results_are_listed(tmp_path):
    store = _store(tmp_path)
    _file(store, "a", "old")
    assert store.result_version("a") == "old"  # a tool's view, no run's listing: as before
    assert store.storage.listings == 1
