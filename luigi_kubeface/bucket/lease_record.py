"""The lease record, lease.json (layout.LEASE): how it is read and signed; the master's lease (master/lease.py)
takes and renews it by compare-and-swap, and the readers (JobStore, `kubeface`) read it here."""

import hashlib
import hmac
import json

from . import layout as naming
from ..errors import BlobNotFoundError


def read_lease(storage):
    """(holder record, generation), or (None, None) when no master ever held the job's lease."""
    try:
        data, generation = storage.read_generation(naming.LEASE)
    except BlobNotFoundError:
        return None, None
    try:
        holder = json.loads(data)
    except ValueError:
        holder = {}
    return (holder if isinstance(holder, dict) else {}), generation


def _mac(key, record):
    text = json.dumps({k: v for k, v in record.items() if k != "hmac"}, sort_keys=True).encode()
    return hmac.new(bytes(key), b"luigi-kubeface lease\n" + text, hashlib.sha256).hexdigest()


def signed(record, key):
    """The record with its signature (the job's key)."""
    return dict(record, hmac=_mac(key, record))


def verified(holder, key):
    """Whether a lease record is signed with the job's key (False without a key: it cannot tell)."""
    given = (holder or {}).get("hmac")
    return (
        key is not None
        and isinstance(given, str)
        and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), _mac(key, holder).encode())
    )
