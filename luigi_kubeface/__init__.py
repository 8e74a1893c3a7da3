"""luigi-kubeface: run each element of a parameter grid as its own pod (or local process), from Luigi.

The package's layers, and which module owns what: docs/architecture.md (the one copy of the diagram).

Exports are loaded lazily so that the task runner (what every pod starts) imports only what it uses.
"""

import importlib

from luigi_kubeface.__version__ import __version__  # noqa: F401  (the one place it is written)

_EXPORTS = {
    "KubefaceMapTask": "luigi_kubeface.luigi_adapter",
    "Client": "luigi_kubeface.client",
    "Settings": "luigi_kubeface.settings",
    "KubefaceError": "luigi_kubeface.errors",
    "ConfigurationError": "luigi_kubeface.errors",
    "StorageError": "luigi_kubeface.errors",
    "ElementFailedError": "luigi_kubeface.errors",
    "JobFailedError": "luigi_kubeface.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError("module 'luigi_kubeface' has no attribute %r" % name)
