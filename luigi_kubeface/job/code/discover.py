"""Ship the user's own code with a job, so a stock image runs any pipeline without a rebuild.

The master finds the user's modules the element function needs (those its pickles name, and what
they import, transitively), packs their sources into one content-addressed archive in the job's
storage, and records the installed distributions that code imports. The runner checks those
distributions against its image, unpacks the archive and puts it first on `sys.path` before it
unpickles anything, so functions and classes stay pickled by reference: the same module names,
the same classes on both sides.


Only Python sources of modules outside the standard library and site-packages ship;
luigi-kubeface itself comes from the image. Data files ship only when named in `code_include`.
This module finds and packs them (the master's); version.py digests them, install.py unpacks them
in the runner.
"""

import ast
import functools
import logging
import importlib.machinery
import importlib.metadata
import importlib.util
import io
import os
import site
import sys
import sysconfig
import zipfile
from dataclasses import dataclass, field

from ...errors import ConfigurationError
from .include import add_path, submodules
from .install import sources_digest

log = logging.getLogger(__name__)

NEVER_SHIPPED = ("luigi_kubeface",)  # the runner itself: always the image's
_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the archive's bytes depend on the sources alone


@dataclass(frozen=True)
class CodePackage:
    """What ships with a job: sources by archive path, and what the image must provide."""

    files: dict = field(repr=False)  # archive path -> bytes
    modules: tuple = ()  # shipped module names, sorted
    requirements: dict = field(default_factory=dict)  # distribution -> master's version
    digest: str = ""  # sha256 of the sources (names and contents), not of the zip's bytes

    @property
    def size(self):
        return sum(len(data) for data in self.files.values())

    def archive(self):
        """A zip of the sources with fixed timestamps and order."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(self.files):
                info = zipfile.ZipInfo(path, _ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, self.files[path])
        return buffer.getvalue()


# -- where a module comes from ----------------------------------------------------------------


def _installed_roots():
    """Directories whose modules are the environment's (stdlib, site-packages), never the user's."""
    roots = set()
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        paths = sysconfig.get_paths(
            vars={"base": prefix, "platbase": prefix, "installed_base": prefix, "installed_platbase": prefix}
        )
        roots.update(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)
    roots.update(getattr(site, "getsitepackages", lambda: [])())
    if getattr(site, "ENABLE_USER_SITE", False):
        roots.add(site.getusersitepackages())
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


class Environment:
    """This interpreter's installed code, told from the user's: its standard library and site-packages
    (read when made, not at import), and which distributions provide a top-level module (read once per
    sys.path: importlib.metadata searches every entry per call)."""

    def __init__(self):
        self.installed_roots = _installed_roots()
        self._user_directories = {}  # directory -> bool
        self._provides = None  # (sys.path when read, top-level name -> {distribution: version})

    def is_user_path(self, path):
        """A source file of the user's own project: not under the interpreter's standard library or
        site-packages (sysconfig, site), nor in any folder named site-packages or dist-packages (another
        environment's, added to sys.path). A pyvenv.cfg in a parent folder says nothing: projects often
        live inside their virtualenv's folder (`python -m venv .`, a .venv beside the sources)."""
        directory = os.path.dirname(os.path.abspath(path))
        if directory not in self._user_directories:
            real = os.path.realpath(directory) + os.sep
            parts = set(real.split(os.sep))
            self._user_directories[directory] = not (
                "site-packages" in parts or "dist-packages" in parts or real.startswith(self.installed_roots)
            )
        return self._user_directories[directory]

    def distributions_of(self, top_level):
        """(distribution, version) pairs providing a top-level module name."""
        if self._provides is None or self._provides[0] != sys.path:
            provides = {}
            for distribution in importlib.metadata.distributions():
                metadata = distribution.metadata  # parsed once (.version would parse it again)
                name, version = metadata["Name"], metadata["Version"]
                tops = (distribution.read_text("top_level.txt") or "").split()
                if not tops:
                    tops = {
                        f.parts[0].split(".")[0]
                        for f in distribution.files or ()
                        if f.parts and not f.parts[0].endswith((".dist-info", ".egg-info")) and f.parts[0] != ".."
                    }
                for top in tops:
                    provides.setdefault(top, {}).setdefault(name, version)  # the first on sys.path wins
            self._provides = (list(sys.path), provides)
        return sorted(self._provides[1].get(top_level, {}).items())


@functools.lru_cache(maxsize=1)
def this_environment():
    """This process's Environment, made at its first use: what build and the code version use by default."""
    return Environment()


def is_user_path(path, environment=None):
    """A source file of the user's own project (Environment.is_user_path)."""
    return (environment or this_environment()).is_user_path(path)


def module_spec(name):
    """The module's spec without importing it (its parent package must be importable by path)."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__spec__", None) is not None:
        return module.__spec__
    if module is not None:  # __main__ run as a script, or a module built by hand
        origin = getattr(module, "__file__", None)
        return importlib.machinery.ModuleSpec(name, None, origin=origin) if origin else None
    parent, _, _ = name.rpartition(".")
    if parent:
        parent_spec = module_spec(parent)
        locations = parent_spec and parent_spec.submodule_search_locations
        try:  # a namespace package's path recomputes itself from sys.modules: KeyError when it is not imported
            return importlib.machinery.PathFinder.find_spec(name, list(locations)) if locations else None
        except KeyError:
            return None
    try:
        return importlib.machinery.PathFinder.find_spec(name) or importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def excluded(name, exclude):
    return any(name == e or name.startswith(e + ".") for e in tuple(exclude) + NEVER_SHIPPED)


def _imports(source, name, is_package):
    """Module names a source imports anywhere (top level, inside functions, under try), resolved."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found += [".".join(parts[: i + 1]) for i in range(len(parts))]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                if node.level - 1 > len(base):
                    continue
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module:
                continue
            parts = module.split(".")
            found += [".".join(parts[: i + 1]) for i in range(len(parts))]
            found += [module + "." + alias.name for alias in node.names if alias.name != "*"]
    return found


def referenced_modules(payload, environment=None):
    """User modules currently loaded whose names a pickle spells out (what unpickling will import).

    Pickle protocol 4+ writes each module name as a short unicode string (opcode 0x8c, one length
    byte); searching for that exact byte pattern finds every by-reference function, class and
    module without unpickling or walking the pickle.
    """
    environment = environment or this_environment()
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "__main__" or not environment.is_user_path(path):
            continue
        encoded = name.encode()
        needle = (b"\x8c" + bytes([len(encoded)]) + encoded) if len(encoded) < 256 else encoded
        if needle in payload:
            names.append(name)
    return names


# -- building a package -------------------------------------------------------------------------


def build(roots, include=(), exclude=(), max_bytes=64 << 20, secrets=(), environment=None):
    """The package of roots (module names) and everything of the user's they import, transitively.

    include: more module names, or paths of files and folders (data too) inside a sys.path entry;
    exclude: module names never shipped (with their submodules); secrets: paths never shipped (the
    signing key file, key_dir) even inside an included folder. Refuses, before anything is launched,
    compiled extensions of the user's own and a package over max_bytes. environment: where the user's
    modules are told from installed ones (this process's by default).
    """
    packer = _Packer(exclude, environment or this_environment())
    packer.queue = [n for n in roots if n and n != "__main__"]
    secrets = [os.path.realpath(os.path.expanduser(p)) for p in secrets if p]
    for entry in include:
        if os.sep in entry or "/" in entry or os.path.exists(entry):
            shipped = add_path(entry, packer.files, packer.queue, secrets)
            log.info(
                "code_include %s ships %d file(s): %s",
                entry,
                len(shipped),
                ", ".join(shipped[:20]) + (" ..." if len(shipped) > 20 else ""),
            )
        else:
            packer.queue.append(entry)
            packer.queue.extend(submodules(entry, module_spec(entry)))
    packer.run()
    if packer.extensions:
        raise ConfigurationError(
            "compiled extension module(s) of your own cannot be shipped to the pods: %s. Install them in the "
            "image (pip install your package in images/Dockerfile), or if the function does not need them, "
            "add them to [kubeface] code_exclude" % ", ".join("%s (%s)" % e for e in sorted(packer.extensions))
        )
    files = packer.files
    package = CodePackage(
        files, tuple(sorted(packer.modules)), dict(sorted(packer.requirements.items())), sources_digest(files)
    )
    if package.size > max_bytes:
        biggest = sorted(files.items(), key=lambda kv: -len(kv[1]))[:5]
        raise ConfigurationError(
            "the code to ship is %.1f MB, over [kubeface] code_max_bytes (%.1f MB); largest files: %s. Move data "
            "out of your modules (read it in the function, or pass it as a shared input), exclude what the "
            "function does not need with code_exclude, or raise code_max_bytes"
            % (package.size / 1e6, max_bytes / 1e6, ", ".join("%s (%.1f MB)" % (p, len(d) / 1e6) for p, d in biggest))
        )
    return package


class _Packer:
    """One build's walk: modules taken from the queue, the user's sources kept, what they import queued."""

    def __init__(self, exclude, environment):
        self.exclude, self.environment = exclude, environment
        self.files, self.modules, self.requirements, self.extensions = {}, set(), {}, []
        self.queue, self.seen = [], set()

    def run(self):
        while self.queue:
            name = self.queue.pop()
            if name not in self.seen:
                self.seen.add(name)
                self.visit(name)

    def require(self, top):
        self.requirements.update(self.environment.distributions_of(top))

    def visit(self, name):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            return
        if excluded(name, self.exclude):
            self.require(top)  # it comes from the image: check its distribution, if it has one
            return
        spec = module_spec(name)
        if spec is None:
            return  # optional imports (try: import x) the master does not have either
        origin = spec.origin if spec.has_location or spec.origin else None
        if not origin or origin in ("built-in", "frozen"):
            if spec.submodule_search_locations and any(
                self.environment.is_user_path(os.path.join(p, "x")) for p in spec.submodule_search_locations
            ):
                self.modules.add(name)  # a namespace package of the user's: nothing to ship for itself
        elif not self.environment.is_user_path(origin):
            self.require(top)
        elif origin.endswith(_EXTENSION_SUFFIXES):
            self.extensions.append((name, origin))
        elif origin.endswith(".py"):
            self.add_source(name, origin)

    def add_source(self, name, origin):
        with open(origin, "rb") as f:
            source = f.read()
        is_package = os.path.basename(origin) == "__init__.py"
        self.files[name.replace(".", "/") + ("/__init__.py" if is_package else ".py")] = source
        self.modules.add(name)
        self.queue.extend(_imports(source, name, is_package))
        parent = name.rpartition(".")[0]
        if parent:
            self.queue.append(parent)
