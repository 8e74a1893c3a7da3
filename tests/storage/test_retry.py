"""Transient storage errors are waited out: a real fake-gcs-server goes away and comes back."""

import threading
import time

import pytest

from luigi_kubeface.errors import TransientStorageError
from luigi_kubeface.storage import open_storage


def test_outage_is_waited_out(own_gcs):
    storage = open_storage("gs://outage/job", retry_deadline=60)
    storage.write("before.txt", b"kept")
    own_gcs.stop()
    restart = threading.Timer(3.0, own_gcs.start)
    restart.start()
    started = time.monotonic()
    storage.write("during.txt", b"written after the outage")
    restart.join()
    assert time.monotonic() - started >= 2.5
    assert storage.read("during.txt") == b"written after the outage"
    assert storage.read("before.txt") == b"kept"  # filesystem backend: data survived the restart


def test_outage_longer_than_deadline_raises(own_gcs):
    storage = open_storage("gs://outage/job", retry_deadline=1.0)
    own_gcs.stop()
    with pytest.raises(TransientStorageError):
        storage.read("anything")
