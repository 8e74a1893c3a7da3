"""A process forked from a master (Luigi's --workers N forks one per running task) never inherits its GCS client.

google-cloud-storage's client starts threads of its own (bucket metadata fetches) that hold its cache's lock;
a fork while one holds it left the child waiting on that lock for good (seen with `luigi --workers 2` on GKE's
storage).

The child's storage may be one it opens, or the very object its parent opened: Luigi's forked worker runs the
job its parent built while scheduling (whose storage had read blobs through the parent's client). Both must
make the child's own client: a storage that kept its parent's bucket object hung a second `luigi` run for good.
"""

import os
import threading

import pytest

from luigi_kubeface.storage import gcs, open_storage


@pytest.mark.parametrize("whose", ["opened-in-the-child", "the-parents-own"])
def test_a_forked_child_makes_its_own_client_and_never_waits_on_a_lock_its_parent_held(gcs_root, whose):
    storage = open_storage(gcs_root + "/forked")
    storage.write("before", b"1")  # the parent's client exists
    assert storage.read("before") == b"1" and storage.exists("before")  # and its storage has used it
    cache = getattr(gcs._client(), "_bucket_metadata_cache", None)
    held, release = threading.Event(), threading.Event()

    def hold():  # what the client's background fetch does, caught at the moment of the fork
        lock = cache._lock if cache is not None else gcs._clients_lock
        with lock:
            held.set()
            release.wait(30)

    threading.Thread(target=hold, daemon=True).start()
    held.wait(10)
    child = os.fork()
    if child == 0:  # the child: one storage write, bounded by an alarm
        import signal

        signal.alarm(20)
        try:
            in_child = open_storage(gcs_root + "/forked") if whose == "opened-in-the-child" else storage
            in_child.write("from-the-child", b"2")
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    try:
        _, status = os.waitpid(child, 0)
    finally:
        release.set()
    assert os.waitstatus_to_exitcode(status) == 0, "the child hung or failed: %s" % os.waitstatus_to_exitcode(status)
    assert storage.read("from-the-child") == b"2"
