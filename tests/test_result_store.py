"""Which results count is the caller's value, and so is a listing of results: two threads reading one job
(the engine and its status page) never see each other's listing."""

import threading

from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.bucket.job_store import JobStore
from luigi_kubeface.bucket.result_store import Counting
from luigi_kubeface.views.job_state import JobState

KEY = "72202434615a2d7ca80b40b4"


class HeldListing:
    """The job's own storage; a listing of results made in the status-page thread is taken at once but
    returned only once released, as a slow listing on GCS returns after the engine's own."""

    def __init__(self, storage):
        self._storage, self.taken, self.released = storage, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self._storage, name)

    def list(self, prefix):
        names = list(self._storage.list(prefix))
        if threading.current_thread().name == "status-page" and prefix == naming.RESULTS_PREFIX:
            self.taken.set()
            self.released.wait(60)
        return names


def _result(tmp_path, version):
    path = tmp_path / "j" / naming.result_key(KEY, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"a result of code %s\n" % version.encode())
    return path


def test_the_status_pages_listing_never_changes_which_results_the_engine_deletes(tmp_path):
    """The status page lists results in its own thread while the engine runs: its listing, older and returning
    later, once replaced the engine's, so the superseded result of this element was never deleted."""
    store = JobStore.at(str(tmp_path), "j", counting=Counting("new"))
    store.write_meta({"job": "j", "elements": 1, "code_version": "new"})
    held = store.storage = HeldListing(store.storage)
    reader = threading.Thread(target=lambda: JobState(store).refresh(), name="status-page")
    reader.start()  # the status page lists while the bucket holds no result yet
    assert held.taken.wait(60)
    old = _result(tmp_path, "old")  # an earlier code's result, as the engine finds it
    engine_versions = store.result_versions()
    new = _result(tmp_path, "new")  # the runner's result of this code
    held.released.set()
    reader.join(60)
    store.drop_other_versions(KEY, engine_versions)
    assert not old.exists() and new.exists()


def test_readers_of_one_job_count_the_versions_each_gives():
    """A reader says which code version it reads: a definition's own, a tool's as job.json says."""
    assert Counting("new", "old").versions == ("new", "old") and Counting("new", "new").versions == ("new",)
    assert Counting("new", reuse_any=True).versions == ("new",)
