"""The runner's side of the shipped code: check the image against the master's distributions, check the
archive's sources against the digest its name and the function's header address, unpack it first on sys.path.

The only module of job/code/ the runner imports (pyproject.toml's import-linter contract): discovery and
the code version (discover.py, version.py) are the master's. Standard library only.
"""

import functools
import hashlib
import importlib
import importlib.metadata
import io
import os
import re
import sys
import zipfile

from ...errors import EnvironmentMismatchError


def sources_digest(files):
    """The digest of sources by archive path (names and contents, not the zip's bytes): CodePackage.digest."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(b"%d:%s:%s\n" % (len(path), path.encode(), hashlib.sha256(files[path]).hexdigest().encode()))
    return digest.hexdigest()


def _release(version):
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0])[:3])


@functools.lru_cache(maxsize=None)
def _installed_version(distribution):
    """This process's version of a distribution (None: not installed), read once per process: each
    importlib.metadata lookup scans sys.path and parses the METADATA file, and an in-process backend
    checks thousands of attempts (a pod checks one, at its start-up)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_environment(requirements):
    """Compare the image's distributions with the master's: warnings (patch level) or an error.

    A different major or minor version, or a missing distribution, is an EnvironmentMismatchError:
    every element would hit it, so the job stops at its first attempt. A patch-level difference
    only warns (printed to the attempt's log).
    """
    problems, warnings = [], []
    for distribution, wanted in sorted(requirements.items()):
        have = _installed_version(distribution)
        if have is None:
            problems.append("%s: the master has %s, the image has none" % (distribution, wanted))
            continue
        if have == wanted:
            continue
        if _release(have)[:2] != _release(wanted)[:2]:
            problems.append("%s: the master has %s, the image has %s" % (distribution, wanted, have))
        else:
            warnings.append(
                "%s: the master has %s, the image has %s (patch level: allowed)" % (distribution, wanted, have)
            )
    if problems:
        lines = "\n".join(
            "RUN pip install %s==%s" % (d, requirements[d])
            for d in sorted(requirements)
            if any(p.startswith(d + ":") for p in problems)
        )
        raise EnvironmentMismatchError(
            "the image's Python packages differ from the master's, which the shipped code imports: %s. Add to "
            "images/Dockerfile (or your image built FROM it) and rebuild:\n%s" % ("; ".join(problems), lines)
        )
    return warnings


def archive_digest(archive):
    """The digest of an archive's sources, as CodePackage.digest has it: what its name and the function's
    header address, so an older archive copied over a newer one's name is told apart."""
    with zipfile.ZipFile(io.BytesIO(archive)) as package:
        return sources_digest({name: package.read(name) for name in package.namelist()})


def install(archive, directory):
    """Unpack the signed archive into directory and put it first on sys.path."""
    with zipfile.ZipFile(io.BytesIO(archive)) as package:
        for name in package.namelist():
            target = os.path.realpath(os.path.join(directory, name))
            if not target.startswith(os.path.realpath(directory) + os.sep):
                raise ValueError("code archive entry %r leaves its folder" % name)
        package.extractall(directory)
    sys.path.insert(0, directory)
    importlib.invalidate_caches()
