"""The code version results are filed under: a digest of what the element function can reach (reach.py),
of the whole modules its inputs name and of what code_include ships; or the version the user pinned.

The master's alone (the runner reads the version from the function's header, never computes it).
"""

import functools
import hashlib
import json
import os
import sys
import types

from . import reach as code_reach
from .discover import build, excluded, module_spec, this_environment


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
            digest.update(
                repr(
                    (
                        v.co_names,
                        v.co_varnames,
                        v.co_freevars,
                        v.co_cellvars,
                        v.co_argcount,
                        v.co_kwonlyargcount,
                        v.co_flags,
                    )
                ).encode()
            )
            for const in v.co_consts:
                feed(const)
        elif isinstance(v, types.FunctionType):
            _feed_function(v, digest, seen, feed)
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


def _feed_function(v, digest, seen, feed):
    """A function by value: its code, defaults, closure and the globals it names (fed in that order);
    one cloudpickle ships by reference (not a lambda) counts by its name."""
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


def code_version(function, package, pinned=None, inputs=(), include=(), exclude=(), environment=None):
    """The short tag results are filed under: a digest of what the function can reach (code_reach.py),
    of the whole modules the element inputs name (inputs) and of what code_include ships, or of the
    version the user pinned by hand (code_version() on a map task, code_version= on Client.map).
    environment: where the user's modules are told from installed ones (discover.Environment)."""
    if pinned is not None:
        basis = {"pinned": str(pinned)}
    else:
        environment = environment or this_environment()
        whole = _whole_digests(package, exclude, environment)
        installed = functools.partial(_is_installed, exclude=exclude, environment=environment)
        basis = {
            "function": function_identity(function),
            "reach": code_reach.Reach(installed, whole).digest(function),
            "inputs": sorted(whole(name) for name in set(inputs)),
            "include": build([], include, exclude, environment=environment).digest if include else "",
        }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def legacy_code_version(function, package):
    """The version main filed results under before code_reach (the function's name and every shipped
    source): results of that version count while the code is the same, so an upgrade recomputes nothing."""
    basis = {"function": function_identity(function), "code": package.digest}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def _whole_digests(package, exclude, environment):
    """module name -> the digest of its sources and of the user's modules it imports, transitively
    (what a module counts with when the analysis is unsure); the whole package for __main__."""
    cache = {}

    def whole(name):
        if name not in cache:
            shippable = name and name != "__main__" and module_spec(name) is not None
            cache[name] = build([name], (), exclude, environment=environment).digest if shippable else package.digest
        return cache[name]

    return whole


def _is_installed(name, exclude, environment):
    """Code counted by name only: the standard library, installed packages, luigi-kubeface, code_exclude."""
    if not name or name == "__main__":
        return False
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or excluded(name, exclude):
        return True
    spec = module_spec(name)
    if spec is None:
        return name not in sys.modules  # a module made by hand (no spec) is the user's
    origin = spec.origin if spec.origin not in (None, "built-in", "frozen") else None
    if origin:
        return not environment.is_user_path(origin)
    return not any(environment.is_user_path(os.path.join(p, "x")) for p in spec.submodule_search_locations or ())
