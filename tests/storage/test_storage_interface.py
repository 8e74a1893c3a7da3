"""What callers ask a storage instead of testing its URL's scheme, and the one retry place's declared list."""

import inspect
import os
import re
import tomllib

from luigi_kubeface import storage
from luigi_kubeface.storage import IO_METHODS, DESCRIPTIVE, REGISTRY, RetryingStorage, Storage, gcs, storage_class
from support import REPO


def protocol_methods():
    return {name for name, member in vars(Storage).items() if inspect.isfunction(member) and not name.startswith("_")}


def test_every_protocol_method_is_either_retried_or_descriptive():
    """RetryingStorage retries a declared list: a new method must be placed in it or among the descriptive ones."""
    assert protocol_methods() == set(IO_METHODS) | set(DESCRIPTIVE)
    assert not set(IO_METHODS) & set(DESCRIPTIVE)


def test_every_registered_storage_has_every_member_of_the_protocol():
    for scheme in REGISTRY:
        cls = storage_class(scheme + "://bucket/x" if scheme != "file" else "/tmp/x")
        missing = [name for name in protocol_methods() | {"remote", "checksum"} if not hasattr(cls, name)]
        assert not missing, (scheme, missing)
        assert isinstance(cls.remote, bool) and cls.checksum in (None, "crc32c")


def test_descriptive_members_pass_through_the_retry_wrapper_unwrapped(tmp_path):
    wrapped = storage.open_storage(str(tmp_path / "job"))
    assert isinstance(wrapped, RetryingStorage)
    assert wrapped.browse_url("status.html") == "file://" + str(tmp_path / "job" / "status.html")
    assert wrapped.remote is False and wrapped.runner_environment() == {} and wrapped.container_hint() == ""


def test_which_storages_pods_reach_is_the_storages_own_answer():
    assert [storage_class(u).remote for u in ("/tmp/x", "file:///tmp/x", "gs://b/x", "s3://b/x")] == [
        False,
        False,
        True,
        True,
    ]


def test_the_gcs_emulator_workaround_is_off_unless_the_emulator_is_in_use():
    """fake-gcs-server issue 1967's extra request before each result upload: only against the emulator."""
    assert not gcs.emulator_workarounds({})
    assert gcs.emulator_workarounds({gcs.EMULATOR_ENV: "http://127.0.0.1:4443"})


def test_no_url_scheme_decides_behaviour_outside_the_storage_modules():
    """Done means: `gs://` / `s3://` tested nowhere but in storage/gcs.py and storage/s3.py (docstrings and
    messages may name them)."""
    test = re.compile(r"""(startswith|==|in)\s*\(?\s*["'](gs|s3)://""")
    found = []
    for folder, _, files in os.walk(os.path.join(REPO, "luigi_kubeface")):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and not path.endswith(("storage/gcs.py", "storage/s3.py")):
                with open(path) as f:
                    found += ["%s: %s" % (path, line.strip()) for line in f if test.search(line)]
    assert not found


def test_google_crc32c_is_declared_since_every_blob_header_holds_a_crc32c():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as file:
        project = tomllib.load(file)["project"]
    assert any(need.startswith("google-crc32c") for need in project["dependencies"])
    assert any(need.startswith("boto3") for need in project["optional-dependencies"]["s3"])
