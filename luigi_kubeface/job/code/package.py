"""Ship the user's own code with a job, so a stock image runs any pipeline without a rebuild.

The master finds the user's modules the element function needs (those its pickles name, and what
they import, transitively), packs their sources into one content-addressed archive in the job's
storage, and records the installed distributions that code imports. The runner checks those
distributions against its image, unpacks the archive and puts it first on `sys.path` before it
unpickles anything, so functions and classes stay pickled by reference: the same module names,
the same classes on both sides.

Only Python sources of modules outside the standard library and site-packages ship;
luigi-kubeface itself comes from the image. Data files ship only when named in `code_include`.
"""

import ast
import functools
import hashlib
import logging
import importlib.machinery
import importlib.metadata
import io
import json
import os
import re
import site
import sys
import sysconfig
import types
import zipfile
from dataclasses import dataclass, field

from . import reach as code_reach
from ...errors import ConfigurationError, EnvironmentMismatchError

log = logging.getLogger(__name__)

NEVER_SHIPPED = ("luigi_kubeface",)  # the runner itself: always the image's
_SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
                 "node_modules", ".ipynb_checkpoints"}
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
        paths = sysconfig.get_paths(vars={"base": prefix, "platbase": prefix, "installed_base": prefix,
                                          "installed_platbase": prefix})
        roots.update(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)
    roots.update(getattr(site, "getsitepackages", lambda: [])())
    if getattr(site, "ENABLE_USER_SITE", False):
        roots.add(site.getusersitepackages())
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


_INSTALLED = _installed_roots()


def is_user_path(path):
    """A source file of the user's own project: not under the interpreter's standard library or
    site-packages (sysconfig, site), nor in any folder named site-packages or dist-packages (another
    environment's, added to sys.path). A pyvenv.cfg in a parent folder says nothing: projects often
    live inside their virtualenv's folder (`python -m venv .`, a .venv beside the sources)."""
    return _is_user_directory(os.path.dirname(os.path.abspath(path)))


@functools.lru_cache(maxsize=4096)
def _is_user_directory(directory):
    real = os.path.realpath(directory) + os.sep
    parts = set(real.split(os.sep))
    return not ("site-packages" in parts or "dist-packages" in parts or real.startswith(_INSTALLED))


def _spec(name):
    """The module's spec without importing it (its parent package must be importable by path)."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__spec__", None) is not None:
        return module.__spec__
    if module is not None:  # __main__ run as a script, or a module built by hand
        origin = getattr(module, "__file__", None)
        return importlib.machinery.ModuleSpec(name, None, origin=origin) if origin else None
    parent, _, _ = name.rpartition(".")
    if parent:
        parent_spec = _spec(parent)
        locations = parent_spec and parent_spec.submodule_search_locations
        try:  # a namespace package's path recomputes itself from sys.modules: KeyError when it is not imported
            return importlib.machinery.PathFinder.find_spec(name, list(locations)) if locations else None
        except KeyError:
            return None
    try:
        return importlib.machinery.PathFinder.find_spec(name) or importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _excluded(name, exclude):
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


def _distributions_of(top_level):
    """(distribution, version) pairs providing a top-level module name, from one pass over the
    installed distributions (cached per sys.path: importlib.metadata searches every entry per call)."""
    global _PACKAGES
    if _PACKAGES is None or _PACKAGES[0] != sys.path:
        provides = {}
        for distribution in importlib.metadata.distributions():
            metadata = distribution.metadata  # parsed once (.version would parse it again)
            name, version = metadata["Name"], metadata["Version"]
            tops = (distribution.read_text("top_level.txt") or "").split()
            if not tops:
                tops = {f.parts[0].split(".")[0] for f in distribution.files or () if f.parts
                        and not f.parts[0].endswith((".dist-info", ".egg-info")) and f.parts[0] != ".."}
            for top in tops:
                provides.setdefault(top, {}).setdefault(name, version)  # the first on sys.path wins
        _PACKAGES = (list(sys.path), provides)
    return sorted(_PACKAGES[1].get(top_level, {}).items())


_PACKAGES = None


def referenced_modules(payload):
    """User modules currently loaded whose names a pickle spells out (what unpickling will import).

    Pickle protocol 4+ writes each module name as a short unicode string (opcode 0x8c, one length
    byte); searching for that exact byte pattern finds every by-reference function, class and
    module without unpickling or walking the pickle.
    """
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "__main__" or not is_user_path(path):
            continue
        encoded = name.encode()
        needle = (b"\x8c" + bytes([len(encoded)]) + encoded) if len(encoded) < 256 else encoded
        if needle in payload:
            names.append(name)
    return names


# -- building a package -------------------------------------------------------------------------

def build(roots, include=(), exclude=(), max_bytes=64 << 20, secrets=()):
    """The package of roots (module names) and everything of the user's they import, transitively.

    include: more module names, or paths of files and folders (data too) inside a sys.path entry;
    exclude: module names never shipped (with their submodules); secrets: paths never shipped (the
    signing key file, key_dir) even inside an included folder. Refuses, before anything is launched,
    compiled extensions of the user's own and a package over max_bytes.
    """
    files, modules, requirements, extensions = {}, set(), {}, []
    queue = [n for n in roots if n and n != "__main__"]
    secrets = [os.path.realpath(os.path.expanduser(p)) for p in secrets if p]
    for entry in include:
        if os.sep in entry or "/" in entry or os.path.exists(entry):
            shipped = _add_path(entry, files, queue, secrets)
            log.info("code_include %s ships %d file(s): %s", entry, len(shipped),
                     ", ".join(shipped[:20]) + (" ..." if len(shipped) > 20 else ""))
        else:
            queue.append(entry)
            queue.extend(_submodules(entry))
    seen = set()
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            continue
        if _excluded(name, exclude):
            _require(top, requirements)  # it comes from the image: check its distribution, if it has one
            continue
        spec = _spec(name)
        if spec is None:
            continue  # optional imports (try: import x) the master does not have either
        origin = spec.origin if spec.has_location or spec.origin else None
        if not origin or origin in ("built-in", "frozen"):
            if spec.submodule_search_locations and any(is_user_path(os.path.join(p, "x"))
                                                      for p in spec.submodule_search_locations):
                modules.add(name)  # a namespace package of the user's: nothing to ship for itself
            continue
        if not is_user_path(origin):
            _require(top, requirements)
            continue
        if origin.endswith(_EXTENSION_SUFFIXES):
            extensions.append((name, origin))
            continue
        if not origin.endswith(".py"):
            continue
        with open(origin, "rb") as f:
            source = f.read()
        is_package = os.path.basename(origin) == "__init__.py"
        path = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
        files[path] = source
        modules.add(name)
        queue.extend(_imports(source, name, is_package))
        parent = name.rpartition(".")[0]
        if parent:
            queue.append(parent)
    if extensions:
        raise ConfigurationError(
            "compiled extension module(s) of your own cannot be shipped to the pods: %s. Install them in the "
            "image (pip install your package in images/Dockerfile), or if the function does not need them, "
            "add them to [kubeface] code_exclude"
            % ", ".join("%s (%s)" % e for e in sorted(extensions)))
    package = CodePackage(files, tuple(sorted(modules)), dict(sorted(requirements.items())), _digest(files))
    if package.size > max_bytes:
        biggest = sorted(files.items(), key=lambda kv: -len(kv[1]))[:5]
        raise ConfigurationError(
            "the code to ship is %.1f MB, over [kubeface] code_max_bytes (%.1f MB); largest files: %s. Move data "
            "out of your modules (read it in the function, or pass it as a shared input), exclude what the "
            "function does not need with code_exclude, or raise code_max_bytes"
            % (package.size / 1e6, max_bytes / 1e6, ", ".join("%s (%.1f MB)" % (p, len(d) / 1e6) for p, d in biggest)))
    return package


def _require(top, requirements):
    requirements.update(_distributions_of(top))


def _submodules(name):
    """Every module of a package given by name in code_include (the package's .py files)."""
    spec = _spec(name)
    found = []
    for location in (spec.submodule_search_locations or []) if spec else []:
        for directory, dirnames, filenames in os.walk(location):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith("."))
            relative = os.path.relpath(directory, location)
            prefix = name if relative == "." else name + "." + relative.replace(os.sep, ".")
            found += [prefix + "." + f[:-3] for f in filenames if f.endswith(".py") and f != "__init__.py"]
            if relative != ".":
                found.append(prefix)
    return found


def _add_path(entry, files, queue, secrets=()):
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
            "under your project's root (where your pipeline module is imported from)" % entry)
    if any(_within(path, secret) for secret in secrets):
        raise ConfigurationError("[kubeface] code_include names %r, which holds the jobs' signing key (signing_key_file "
                                 "or key_dir): keys never ship; move it out of the project" % entry)
    walk = [(os.path.dirname(path), [], [os.path.basename(path)])] if os.path.isfile(path) else os.walk(path)
    shipped = []
    for directory, dirnames, filenames in walk:
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith(".")
                       and not os.path.exists(os.path.join(directory, d, "pyvenv.cfg"))
                       and _within(os.path.realpath(os.path.join(directory, d)), base)]
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


def _digest(files):
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(b"%d:%s:%s\n" % (len(path), path.encode(), hashlib.sha256(files[path]).hexdigest().encode()))
    return digest.hexdigest()


# -- the code version -----------------------------------------------------------------------------

def function_identity(function):
    """What the function is, independent of the process: a name for what ships by reference, a
    digest of the bytecode for what cloudpickle sends by value (lambdas, closures, __main__)."""
    from cloudpickle.cloudpickle import _should_pickle_by_reference

    if isinstance(function, types.MethodType):
        owner = function.__self__ if isinstance(function.__self__, type) else type(function.__self__)
        if _should_pickle_by_reference(owner):
            return "method %s:%s.%s" % (owner.__module__, owner.__qualname__, function.__func__.__name__)
        return "method-by-value %s" % _members_digest(owner)
    if isinstance(function, (types.FunctionType, type)) and _should_pickle_by_reference(function):
        return "function %s:%s" % (function.__module__, function.__qualname__)
    if isinstance(function, types.FunctionType):
        return "function-by-value %s" % _value_digest(function, set())
    return "callable %s" % _value_digest(function, set())


def _members_digest(cls):
    digest = hashlib.sha256()
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue
        digest.update(("%s:%s" % (klass.__module__, klass.__qualname__)).encode())
        for name in sorted(vars(klass)):
            value = vars(klass)[name]
            value = getattr(value, "__func__", value)
            if isinstance(value, types.FunctionType):
                digest.update(name.encode() + _value_digest(value, set()).encode())
    return digest.hexdigest()


def _value_digest(value, seen):
    """A digest that is the same in every process for the same code and plain data (never a pickle:
    set order and memo layout differ between processes)."""
    digest = hashlib.sha256()

    def feed(v):
        if isinstance(v, types.CodeType):
            digest.update(v.co_code)
            digest.update(repr((v.co_names, v.co_varnames, v.co_freevars, v.co_cellvars, v.co_argcount,
                                v.co_kwonlyargcount, v.co_flags)).encode())
            for const in v.co_consts:
                feed(const)
        elif isinstance(v, types.FunctionType):
            if id(v) in seen:
                digest.update(b"<recursion>")
                return
            seen.add(id(v))
            from cloudpickle.cloudpickle import _should_pickle_by_reference

            if v.__name__ != "<lambda>" and _should_pickle_by_reference(v):
                digest.update(("ref %s:%s" % (v.__module__, v.__qualname__)).encode())
                return
            feed(v.__code__)
            feed(v.__defaults__)
            feed(v.__kwdefaults__)
            for cell in v.__closure__ or ():
                try:
                    feed(cell.cell_contents)
                except ValueError:  # an empty cell
                    digest.update(b"<empty>")
            for name in _global_names(v.__code__):
                if name in v.__globals__:
                    digest.update(name.encode())
                    feed(v.__globals__[name])
        elif isinstance(v, (set, frozenset)):
            digest.update(b"set")
            for text in sorted(_plain_text(x) for x in v):
                digest.update(text.encode())
        elif isinstance(v, (list, tuple)):
            digest.update(type(v).__name__.encode())
            for x in v:
                feed(x)
        elif isinstance(v, dict):
            digest.update(b"dict")
            for key in sorted(v, key=_plain_text):
                digest.update(_plain_text(key).encode())
                feed(v[key])
        elif isinstance(v, types.ModuleType):
            digest.update(("module %s" % v.__name__).encode())
        elif isinstance(v, type):
            digest.update(("class %s:%s" % (v.__module__, v.__qualname__)).encode())
        else:
            digest.update(_plain_text(v).encode())

    feed(value)
    return digest.hexdigest()


def _global_names(code):
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return sorted(set(names))


def _plain_text(value):
    """Text of plain data; for anything else its type only (its content is data, not code)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return "%s:%r" % (type(value).__name__, value)
    if isinstance(value, (set, frozenset)):
        return "set[%s]" % ",".join(sorted(_plain_text(v) for v in value))
    if isinstance(value, (list, tuple)):
        return "%s[%s]" % (type(value).__name__, ",".join(_plain_text(v) for v in value))
    return "<%s.%s>" % (type(value).__module__, type(value).__qualname__)


def code_version(function, package, pinned=None, inputs=(), include=(), exclude=()):
    """The short tag results are filed under: a digest of what the function can reach (code_reach.py),
    of the whole modules the element inputs name (inputs) and of what code_include ships, or of the
    version the user pinned by hand (code_version() on a map task, code_version= on Client.map)."""
    if pinned is not None:
        basis = {"pinned": str(pinned)}
    else:
        whole = _whole_digests(package, exclude)
        basis = {"function": function_identity(function),
                 "reach": code_reach.Reach(lambda name: _is_installed(name, exclude), whole).digest(function),
                 "inputs": sorted(whole(name) for name in set(inputs)),
                 "include": build([], include, exclude).digest if include else ""}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def legacy_code_version(function, package):
    """The version main filed results under before code_reach (the function's name and every shipped
    source): results of that version count while the code is the same, so an upgrade recomputes nothing."""
    basis = {"function": function_identity(function), "code": package.digest}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def _whole_digests(package, exclude):
    """module name -> the digest of its sources and of the user's modules it imports, transitively
    (what a module counts with when the analysis is unsure); the whole package for __main__."""
    cache = {}

    def whole(name):
        if name not in cache:
            shippable = name and name != "__main__" and _spec(name) is not None
            cache[name] = build([name], (), exclude).digest if shippable else package.digest
        return cache[name]

    return whole


def _is_installed(name, exclude):
    """Code counted by name only: the standard library, installed packages, luigi-kubeface, code_exclude."""
    if not name or name == "__main__":
        return False
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or _excluded(name, exclude):
        return True
    spec = _spec(name)
    if spec is None:
        return name not in sys.modules  # a module made by hand (no spec) is the user's
    origin = spec.origin if spec.origin not in (None, "built-in", "frozen") else None
    if origin:
        return not is_user_path(origin)
    return not any(is_user_path(os.path.join(p, "x")) for p in spec.submodule_search_locations or ())


# -- in the runner ------------------------------------------------------------------------------

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
            warnings.append("%s: the master has %s, the image has %s (patch level: allowed)" % (distribution, wanted, have))
    if problems:
        lines = "\n".join("RUN pip install %s==%s" % (d, requirements[d])
                          for d in sorted(requirements) if any(p.startswith(d + ":") for p in problems))
        raise EnvironmentMismatchError(
            "the image's Python packages differ from the master's, which the shipped code imports: %s. Add to "
            "images/Dockerfile (or your image built FROM it) and rebuild:\n%s"
            % ("; ".join(problems), lines))
    return warnings


def archive_digest(archive):
    """The digest of an archive's sources, as CodePackage.digest has it: what its name and the function's
    header address, so an older archive copied over a newer one's name is told apart."""
    with zipfile.ZipFile(io.BytesIO(archive)) as package:
        return _digest({name: package.read(name) for name in package.namelist()})


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
