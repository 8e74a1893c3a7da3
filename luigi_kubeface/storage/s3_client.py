"""This process's boto3 clients for S3 storage (s3.py): one per endpoint, region and addressing style,
holding its connection pool, made again after a fork (botocore's are not safe across one)."""

import os
import threading

from .s3_wire import on_aws

_clients: dict = {}  # (endpoint, region, style) -> this process's boto3 client
_clients_lock = threading.Lock()


def client(endpoint, region, style):
    """One client per process and endpoint: it holds the connection pool; boto3's own retries are off."""
    key = (endpoint, region, style)
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            def make(addressing):
                config = Config(
                    retries={"total_max_attempts": 1},
                    max_pool_connections=32,
                    connect_timeout=20,
                    read_timeout=120,
                    s3={"addressing_style": addressing},
                    request_checksum_calculation="when_required",  # we send our own CRC32C
                    response_checksum_validation="when_required",
                )
                return boto3.session.Session().client(
                    "s3", endpoint_url=endpoint or None, region_name=region or None, config=config
                )

            client = make("virtual" if style == "virtual" else "path" if style == "path" else "auto")
            if style == "auto" and not on_aws(client.meta.endpoint_url):
                client = make("path")  # Ceph, SeaweedFS, MinIO and emulators rarely serve virtual hosts
            _clients[key] = client
        return _clients[key]


def forget_clients():
    with _clients_lock:
        _clients.clear()


def _after_fork_in_child():
    """A forked process (Luigi's --workers N) makes its own clients: botocore's are not safe across a fork."""
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
