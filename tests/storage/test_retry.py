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


def test_a_storage_method_s_signature_is_computed_once_per_class_not_per_call(tmp_path, monkeypatch):
    """inspect.signature cost about 12% of the master's own time when taken on every storage call."""
    import inspect

    from luigi_kubeface import storage as storage_module

    calls = []
    real = inspect.signature
    monkeypatch.setattr(storage_module.inspect, "signature", lambda f: calls.append(f) or real(f))
    monkeypatch.setattr(storage_module, "_SIGNATURES", {})
    store = storage_module.open_storage(str(tmp_path / "root"))
    for i in range(20):
        store.write("k%d" % i, b"x")
        assert store.exists("k%d" % i)
    assert len(calls) == 2  # write and exists, once each
