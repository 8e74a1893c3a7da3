"""The test cluster's image: a bare virtualenv with luigi-kubeface installed from a wheel of the checkout.

Pods see what a stock image holds (Python, luigi-kubeface and the third-party packages the tests'
pipelines import), never the repository, the tests or the master's PYTHONPATH: the user's code
reaches them only as the job ships it. The third-party layer is a virtualenv built once per set of
versions (the master's own, so the runner's environment check passes) and cached under
~/.cache/luigi-kubeface; each test session adds a fresh wheel of the checkout on top.
"""

import fcntl
import hashlib
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("LUIGI_KUBEFACE_CACHE", Path.home() / ".cache" / "luigi-kubeface"))
# What the tests' pipelines and elements import in pods: the extras, and test packages the shipped test
# modules import (pytest, numpy ...). Not the test servers (moto, fake-gcs-server): pods never run them.
EXTRAS = "examples,s3,pandas"
POD_PACKAGES = ("pytest", "requests", "cryptography", "numpy")


def _run(argv, **kwargs):
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise RuntimeError(
            "%s failed (%d):\n%s%s"
            % (" ".join(map(str, argv)), done.returncode, done.stdout[-3000:], done.stderr[-3000:])
        )
    return done.stdout


def _site_packages(venv):
    relative = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return venv / relative


def build_wheel(out_dir):
    """A wheel of the checkout, built by pip in an isolated build environment (seconds once pip has cached setuptools)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out_dir, REPO])
    return next(out_dir.glob("luigi_kubeface-*.whl"))


def _third_party_layer(wheel):
    """The dependencies at the master's versions, without luigi-kubeface: built once, then cached."""
    freeze = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"])
    pins = "\n".join(sorted(line for line in freeze.splitlines() if "==" in line and not line.startswith("-")))
    setup = (REPO / "pyproject.toml").read_bytes()
    key = hashlib.sha256(
        sys.version.encode() + setup + pins.encode() + EXTRAS.encode() + " ".join(POD_PACKAGES).encode()
    ).hexdigest()[:16]
    venv = CACHE / ("image-deps-" + key)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "image-deps.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / "ready").exists():
            return venv
        _run([sys.executable, "-m", "venv", "--clear", venv])
        constraints = venv / "constraints.txt"
        constraints.write_text(pins + "\n")
        _run(
            [
                venv / "bin" / "python",
                "-m",
                "pip",
                "install",
                "-q",
                "-c",
                constraints,
                "%s[%s]" % (wheel, EXTRAS),
                *POD_PACKAGES,
            ]
        )
        _run([venv / "bin" / "python", "-m", "pip", "uninstall", "-q", "-y", "luigi-kubeface"])
        (venv / "ready").write_text("ok\n")
    return venv


def build_test_image(workdir):
    """A virtualenv for this session's pods; returns its bin directory (the node agent's image)."""
    workdir = Path(workdir)
    wheel = build_wheel(workdir / "wheel")
    deps = _third_party_layer(wheel)
    venv = workdir / "venv"
    _run([deps / "bin" / "python", "-m", "venv", "--without-pip", venv])
    site_packages = _site_packages(venv)
    (site_packages / "kubeface-image-deps.pth").write_text(str(_site_packages(deps)) + "\n")
    with zipfile.ZipFile(wheel) as archive:  # installing a pure wheel is unpacking it
        archive.extractall(site_packages)
    return str(venv / "bin")
