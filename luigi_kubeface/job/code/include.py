"""What `[kubeface] code_include` names, found on disk: the modules of a package named by name, and the
files of a file or folder named by path (never dotfiles, links out of the project or secrets)."""

import os
import sys

from ...errors import ConfigurationError

SKIPPED_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    "node_modules",
    ".ipynb_checkpoints",
}


def submodules(name, spec):
    """Every module of a package given by name in code_include (the package's .py files; spec: its module spec)."""
    found = []
    for location in (spec.submodule_search_locations or []) if spec else []:
        for directory, dirnames, filenames in os.walk(location):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
            relative = os.path.relpath(directory, location)
            prefix = name if relative == "." else name + "." + relative.replace(os.sep, ".")
            found += [prefix + "." + f[:-3] for f in filenames if f.endswith(".py") and f != "__init__.py"]
            if relative != ".":
                found.append(prefix)
    return found


def add_path(entry, files, queue, secrets=()):
    """A file or folder named in code_include ships under its path relative to its sys.path entry; the paths shipped.

    Inside a folder, never: dotfiles and dot-folders (.env, .aws; name one by one to ship it), a link to
    anything outside the project, or a secret (the signing key file, key_dir).
    """
    path = os.path.realpath(entry)
    if not os.path.exists(path):
        raise ConfigurationError("[kubeface] code_include names %r, which does not exist" % entry)
    bases = sorted((os.path.realpath(p or os.getcwd()) for p in sys.path), key=len, reverse=True)
    base = next((b for b in bases if path == b or path.startswith(b + os.sep)), None)
    if base is None or path == base:
        raise ConfigurationError(
            "[kubeface] code_include names %r, which is not inside a folder on sys.path: name a file or folder "
            "under your project's root (where your pipeline module is imported from)" % entry
        )
    if any(_within(path, secret) for secret in secrets):
        raise ConfigurationError(
            "[kubeface] code_include names %r, which holds the jobs' signing key (signing_key_file "
            "or key_dir): keys never ship; move it out of the project" % entry
        )
    walk = [(os.path.dirname(path), [], [os.path.basename(path)])] if os.path.isfile(path) else os.walk(path)
    shipped = []
    for directory, dirnames, filenames in walk:
        dirnames[:] = [
            d
            for d in dirnames
            if d not in SKIPPED_DIRS
            and not d.startswith(".")
            and not os.path.exists(os.path.join(directory, d, "pyvenv.cfg"))
            and _within(os.path.realpath(os.path.join(directory, d)), base)
        ]
        for filename in filenames:
            full = os.path.join(directory, filename)
            named = os.path.realpath(full) == path  # a file named one by one ships even if it is a dotfile
            if filename.endswith((".pyc", ".pyo")) or (filename.startswith(".") and not named):
                continue
            real = os.path.realpath(full)
            if not _within(real, base) or any(_within(real, secret) for secret in secrets):
                continue
            relative = os.path.relpath(full, base).replace(os.sep, "/")
            with open(full, "rb") as f:
                files[relative] = f.read()
            shipped.append(relative)
            if filename.endswith(".py"):
                module = relative[:-3].replace("/", ".")
                queue.append(module[: -len(".__init__")] if module.endswith(".__init__") else module)
    return shipped


def _within(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
