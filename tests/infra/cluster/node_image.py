"""The real node's images, built without a registry: what users' pods run, from images/Dockerfile unchanged.

No image is ever pulled. Four layers, each cached under ~/.cache/luigi-kubeface and keyed by what
goes into it, so a code edit rebuilds only the last one:

1. base: a Debian 12 minbase with Python 3.11 (debootstrap), a virtualenv first on PATH, tagged as the
   Dockerfile's ``FROM`` (python:3.11-slim) in a buildah store of our own.
2. product: ``buildah bud -f images/Dockerfile`` (``--isolation chroot --pull=never``), the image
   users build; pip inside it reaches PyPI with the machine's CA bundle mounted.
3. extras: the test pipelines' packages pinned to the master's versions (the runner checks them).
4. session: a wheel of the checkout over it, as ``luigi-kubeface:test``: what the tests' pods run.

Each image leaves as a docker-archive file that the node's containerd imports (real_node.py).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

from .image import EXTRAS, POD_PACKAGES, _run, build_wheel

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("LUIGI_KUBEFACE_CACHE", Path.home() / ".cache" / "luigi-kubeface"))
STORE = CACHE / "buildah-store"
ARCHIVES = CACHE / "node-images"
BASE_VERSION = "debian12-py311-1"  # bump when the base recipe below changes
DEBIAN_MIRROR = os.environ.get("KUBEFACE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TEST_IMAGE = "docker.io/library/luigi-kubeface:test"
USER = "65532:65532"  # the Dockerfile's


def buildah(*args, **kwargs):
    """buildah on the project's own store (vfs: works on any filesystem, needs no fuse)."""
    return _run(
        ["buildah", "--root", STORE / "root", "--runroot", STORE / "run", "--storage-driver", "vfs", *args], **kwargs
    )


def _has_image(name):
    try:
        buildah("inspect", "--type", "image", name)
        return True
    except RuntimeError:
        return False


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def dockerfile_from(dockerfile):
    """The image the Dockerfile builds FROM, as a full reference (python:3.11-slim -> docker.io/library/...)."""
    name = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M).group(1)
    if "/" not in name:
        name = "library/" + name
    if "." not in name.split("/")[0]:
        name = "docker.io/" + name
    return name


def _base(from_name):
    """Debian 12 minbase + python3 (debootstrap), a venv at /opt/venv first on PATH, tagged as from_name."""
    tag = "localhost/kubeface-base:" + BASE_VERSION
    if _has_image(tag):
        buildah("tag", tag, from_name)
        return tag
    with tempfile.TemporaryDirectory(prefix="kubeface-base-", dir=CACHE) as tmp:
        root = Path(tmp) / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                root,
                DEBIAN_MIRROR,
            ]
        )
        _run(["chroot", root, "/usr/bin/python3", "-m", "venv", "/opt/venv"])
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ):
            shutil.rmtree(root / junk, ignore_errors=True)
        archive = Path(tmp) / "rootfs.tar"
        _run(["tar", "-C", root, "--numeric-owner", "-cf", archive, "."])
        ctr = buildah("from", "--pull=never", "scratch").strip()
        try:
            buildah("add", ctr, archive, "/")
            buildah(
                "config",
                "--env",
                "PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                ctr,
            )
            buildah("commit", "-q", ctr, tag)
        finally:
            buildah("rm", ctr)
    buildah("tag", tag, from_name)
    return tag


def _product(base_key):
    """images/Dockerfile, unchanged, over the base. Keyed by the Dockerfile and the dependencies it installs:
    the luigi-kubeface it copies in may be older than the checkout; the session layer replaces it."""
    dockerfile = REPO / "images" / "Dockerfile"
    tag = "localhost/kubeface-product:" + _digest(base_key, dockerfile.read_bytes(), _image_dependencies())
    if not _has_image(tag):
        buildah(
            "bud",
            "--pull=never",
            "--isolation",
            "chroot",
            "--layers=false",
            "-v",
            "%s:%s:ro" % (CA_BUNDLE, CA_BUNDLE),
            "-f",
            dockerfile,
            "-t",
            tag,
            REPO,
        )
    return tag


def _image_dependencies():
    """The packages the Dockerfile's `pip install "/opt/kubeface[examples,s3]"` asks for: a new test extra in
    pyproject.toml rebuilds nothing here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return json.dumps([project["dependencies"], extras["examples"], extras["s3"]]).encode()


def _master_pins():
    freeze = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"])
    return "\n".join(sorted(line for line in freeze.splitlines() if "==" in line and not line.startswith("-")))


def _layer(tag, containerfile, files):
    """Build a small Containerfile in a context of its own holding ``files`` ({name: bytes or Path})."""
    with tempfile.TemporaryDirectory(prefix="kubeface-layer-", dir=CACHE) as context:
        for name, content in files.items():
            target = Path(context) / name
            if isinstance(content, Path):
                shutil.copy(content, target)
            else:
                target.write_bytes(content)
        (Path(context) / "Containerfile").write_text(containerfile)
        buildah(
            "bud",
            "--pull=never",
            "--isolation",
            "chroot",
            "--layers=false",
            "-v",
            "%s:%s:ro" % (CA_BUNDLE, CA_BUNDLE),
            "-f",
            Path(context) / "Containerfile",
            "-t",
            tag,
            context,
        )


def _extras(product):
    """The tests' pipelines' packages (scikit-learn, pytest ...) at the master's versions."""
    pins = _master_pins()
    tag = "localhost/kubeface-extras:" + _digest(product, pins, EXTRAS, " ".join(POD_PACKAGES))
    if not _has_image(tag):
        _layer(
            tag,
            "FROM %s\nUSER root\nCOPY constraints.txt /tmp/constraints.txt\n"
            'RUN pip install --no-cache-dir -c /tmp/constraints.txt "/opt/kubeface[%s]" %s && rm /tmp/constraints.txt\n'
            "USER %s\n" % (product, EXTRAS, " ".join(POD_PACKAGES), USER),
            {"constraints.txt": (pins + "\n").encode()},
        )
    return tag


def _sources_digest():
    """What the wheel of the checkout holds, without building it: its sources."""
    h = hashlib.sha256((REPO / "pyproject.toml").read_bytes())
    for path in sorted((REPO / "luigi_kubeface").rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _session(extras, workdir):
    """A wheel of the checkout over the extras: the image the tests' pods run."""
    tag = "localhost/kubeface-session:" + _digest(extras, _sources_digest())
    if not _has_image(tag):
        wheel = build_wheel(Path(workdir) / "wheel")
        _layer(
            tag,
            "FROM %s\nUSER root\nCOPY %s /tmp/\nRUN pip install --no-cache-dir --no-deps --force-reinstall "
            "/tmp/%s && rm /tmp/%s\nUSER %s\n" % (extras, wheel.name, wheel.name, wheel.name, USER),
            {wheel.name: wheel},
        )
    return tag


def archive(tag, name):
    """The image ``tag`` as a docker-archive file naming it ``name`` (cached beside its key)."""
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    path = ARCHIVES / ("%s.tar" % re.sub(r"[^A-Za-z0-9_.-]+", "_", tag + "@" + name))
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        buildah("push", "-q", tag, "docker-archive:%s:%s" % (tmp, name))
        tmp.rename(path)
    return path


def build_images(workdir, extra_images=()):
    """Build (or find cached) the test image; returns {image name: docker-archive path}.

    extra_images: (name, Containerfile over the test image) pairs, e.g. an image whose user is root.
    """
    STORE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "node-images.lock", "w") as lock, _leaving_no_trace():
        fcntl.flock(lock, fcntl.LOCK_EX)
        from_name = dockerfile_from(REPO / "images" / "Dockerfile")
        base = _base(from_name)
        session = _session(_extras(_product(base)), workdir)
        images = {TEST_IMAGE: archive(session, TEST_IMAGE)}
        for name, containerfile in extra_images:
            tag = "localhost/kubeface-extra:" + _digest(session, containerfile)
            if not _has_image(tag):
                _layer(tag, containerfile.format(base=session), {})
            images[name] = archive(tag, name)
        _prune_archives(set(images.values()))
    return images


# buildah makes these whatever its --root says (a CNI lock, a blob-info cache): gone again if it made them.
BUILDAH_TRACES = ("/etc/cni", "/var/lib/containers", "/run/containers")


@contextlib.contextmanager
def _leaving_no_trace():
    made = [p for p in BUILDAH_TRACES if not os.path.lexists(p)]
    try:
        yield
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def _prune_archives(keep):
    """Archives of older sessions' code go: each is the size of the image."""
    for path in ARCHIVES.glob("*localhost_kubeface-session*") if ARCHIVES.exists() else ():
        if path not in keep and "session" in path.name:
            path.unlink(missing_ok=True)
    for path in ARCHIVES.glob("*localhost_kubeface-extra*") if ARCHIVES.exists() else ():
        if path not in keep:
            path.unlink(missing_ok=True)
