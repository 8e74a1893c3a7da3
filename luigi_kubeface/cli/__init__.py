"""The ``kubeface`` command (commands.py): see and debug jobs from their storage alone."""

from .commands import main

__all__ = ["main"]
