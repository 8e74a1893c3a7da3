"""A process forked from a master (Luigi's --workers N forks one per running task) never inherits its GCS client.

google-cloud-storage's client starts threads of its own (bucket metadata fetches) that hold its cache's lock;
a fork while one holds it left the child waiting on that lock for good (seen with `luigi --workers 2` on GKE's
storage).
"""

import os
import threading

from luigi_kubeface.storage import gcs, open_storage


def test_a_forked_child_makes_its_own_client_and_never_waits_on_a_lock_its_parent_held(gcs_root):
    storage = open_storage(gcs_root + "/forked")
    storage.write("before", b"1")  # the parent's client exists
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
            open_storage(gcs_root + "/forked").write("from-the-child", b"2")
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    try:
        _, status = os.waitpid(child, 0)
    finally:
        release.set()
    assert os.waitstatus_to_exitcode(status) == 0, "the child hung or failed: %s" % os.waitstatus_to_exitcode(status)
    assert storage.read("from-the-child") == b"2"
