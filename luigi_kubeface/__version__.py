"""The one place the release's version is written: pyproject.toml and `luigi_kubeface.__version__` read it."""

__version__ = "0.1.0"
