"""The public surface, pinned: moving modules inside the package never changes what users import."""

import luigi_kubeface

EXPORTED = [
    "Client",
    "ConfigurationError",
    "ElementFailedError",
    "JobFailedError",
    "KubefaceError",
    "KubefaceMapTask",
    "Settings",
    "StorageError",
]


def test_the_package_exports_exactly_these_names():
    assert luigi_kubeface.__all__ == EXPORTED


def test_every_exported_name_resolves_to_a_public_class():
    for name in EXPORTED:
        member = getattr(luigi_kubeface, name)
        assert isinstance(member, type) and member.__name__ == name
