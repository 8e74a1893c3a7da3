"""What the element function can reach, as one digest: the code version follows it, so an edit the
function cannot reach (another task's run(), a helper only a downstream task imports) recomputes nothing.

Starting from the function, it follows live objects in the master, transitively: each function's
bytecode and constants, its defaults and closure, the globals it loads (functions, classes, modules,
module-level values), the attributes it names on the modules it reaches, the members of the classes
it names (all of them) and of self's class (those it names, and dunders), and the modules it imports.
A module-level value that is not plain data is known by the top-level statements that mention it.
Installed code (stdlib, site-packages, luigi-kubeface, code_exclude) counts by name only: it is the
image's, checked against job.json instead.

When it cannot be sure (getattr, exec, globals(), vars(), sys.modules, `import *`, a module
__getattr__, an unbound global, a module it imports but the master has not loaded, an opaque value
without source), the module concerned counts whole: its sources and those of the user's modules it
imports (`whole(module)`), as before this analysis existed.

bytecode.py reads a function's code (its behaviour's digest, its instructions), module_source.py a
module's parsed source and the names its top-level statements mention; this module is the walk.
"""

import ast
import builtins
import hashlib
import inspect
import sys
import types

from .bytecode import PLAIN, code_text, instructions, plain_text, resolve_import
from .module_source import cell_class, mentioned, names_loaded, source_tree

# Names whose use means any attribute or global may be reached: the analysis gives up on that module.
DYNAMIC = frozenset(
    {
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "eval",
        "exec",
        "compile",
        "__import__",
        "import_module",
        "__dict__",
        "__getattribute__",
        "modules",
        "reload",
    }
)
_ATTR_OPS = {"LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "DELETE_ATTR", "IMPORT_FROM", "LOAD_SUPER_ATTR"}
_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"}
# Class entries that are not code: editing a docstring of a class recomputes nothing.
_NOT_CODE = {
    "__doc__",
    "__module__",
    "__qualname__",
    "__dict__",
    "__weakref__",
    "__annotations__",
    "__abstractmethods__",
    "__firstlineno__",
    "__static_attributes__",
    "_abc_impl",
}


class Reach:
    """One walk from a function. is_installed(module_name) says what counts by name only;
    whole(module_name) gives the digest a module counts with when the analysis is unsure."""

    def __init__(self, is_installed, whole):
        self.is_installed, self.whole = is_installed, whole
        self.parts = {}  # label -> set of texts; the digest is of them, sorted
        self.attrs = set()  # attribute names loaded anywhere in reached code
        self.queue, self.seen = [], {}  # functions to follow; id -> object seen (kept alive: ids stay unique)
        self.modules = {}  # reached user module -> names of it already followed
        self.classes = {}  # reached user class -> (full, names of it already followed)
        self.owner = None  # self's class, for a bound method: only members it names count
        self.globals_done = set()  # (module, name) already followed

    # -- the walk -------------------------------------------------------------------------

    def digest(self, function):
        if isinstance(function, types.MethodType):
            self_ = function.__self__
            self.owner = self_ if isinstance(self_, type) else type(self_)
            self._class(self.owner, full=False)
            if not isinstance(self_, type):
                self._instance_types(self_, 0)
            function = function.__func__
        self._add("start", self.value(function, _module_of(function)))
        while self._step():
            pass
        lines = sorted("%s=%s" % (label, text) for label, texts in self.parts.items() for text in texts)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def _step(self):
        """Follow the queue, then what new attribute names reach in modules and classes; False when done."""
        progressed = bool(self.queue)
        while self.queue:
            self._function(self.queue.pop())
        for module in sorted(self.modules, key=lambda m: m.__name__):
            for name in sorted((self.attrs & set(vars(module))) - self.modules[module]):
                self.modules[module].add(name)
                self._global(module.__name__, name, vars(module)[name])
                progressed = True
        for cls in sorted(self.classes, key=lambda c: (c.__module__, c.__qualname__)):
            full, done = self.classes[cls]
            for name in sorted(set(vars(cls)) - done - _NOT_CODE):
                if full or name in self.attrs or (name.startswith("__") and name.endswith("__")):
                    done.add(name)
                    self._member(cls, name)
                    progressed = True
        return progressed

    def _add(self, label, text):
        self.parts.setdefault(label, set()).add(text)

    def fallback(self, module_name, why):
        self._add("whole %s" % module_name, "%s %s" % (why, self.whole(module_name)))

    # -- values -----------------------------------------------------------------------------

    def value(self, v, module, depth=0):
        """A value's text; functions, classes and modules it holds are followed (module: where it was found)."""
        if isinstance(v, PLAIN):
            return plain_text(v)
        if depth > 50:
            self.fallback(module, "deep value")
            return "deep"
        if isinstance(v, (list, tuple, set, frozenset)):
            texts = [self.value(x, module, depth + 1) for x in v]
            return "%s[%s]" % (type(v).__name__, ",".join(sorted(texts) if isinstance(v, (set, frozenset)) else texts))
        if isinstance(v, dict):
            return "dict{%s}" % ",".join(
                sorted(
                    "%s:%s" % (self.value(k, module, depth + 1), self.value(x, module, depth + 1)) for k, x in v.items()
                )
            )
        if isinstance(v, types.ModuleType):
            if not self.is_installed(v.__name__):
                self.modules.setdefault(v, set())
            return "module %s" % v.__name__
        if isinstance(v, (types.FunctionType, type)):
            name = "%s:%s" % (getattr(v, "__module__", None), getattr(v, "__qualname__", "?"))
            if self.is_installed(getattr(v, "__module__", None)):
                return "ref " + name
            if isinstance(v, type):
                self._class(v, full=v is not self.owner)
            elif id(v) not in self.seen:
                self.seen[id(v)] = v
                self.queue.append(v)
            return ("class " if isinstance(v, type) else "fn ") + name
        if isinstance(v, (types.MethodType, staticmethod, classmethod)):
            return "method(%s)" % self.value(v.__func__, module, depth + 1)
        if isinstance(v, property):
            return "property(%s)" % ",".join(self.value(f, module, depth + 1) for f in (v.fget, v.fset, v.fdel))
        if isinstance(v, (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType)):
            return "builtin %s" % getattr(v, "__qualname__", v)
        return None  # opaque: the caller knows where it was defined

    def _global(self, module_name, name, v):
        """A module-level name a reached piece of code loads."""
        if (module_name, name) in self.globals_done:
            return
        self.globals_done.add((module_name, name))
        source = source_tree(module_name)
        if source is not None and source.star:
            self.fallback(module_name, "import *")
        text = self.value(v, module_name)
        if text is None:
            text = self._opaque(v, module_name, name)
        self._add("global %s.%s" % (module_name, name), text)

    def _opaque(self, v, module_name, name):
        """A value that is not plain data nor code: its type, and the statements that made it."""
        if hasattr(v, "__wrapped__"):  # a decorated function (functools.wraps, lru_cache)
            self.value(v.__wrapped__, module_name)
        self._instance_types(v, 0)
        source = source_tree(module_name)
        if source is None or name in source.declared_global:
            self.fallback(module_name, "opaque %s" % name)
            return "opaque %s" % type(v).__qualname__
        statements = [s for s in source.tree.body if name in mentioned(s)]
        for statement in statements:  # what those statements load is reached too
            for loaded in sorted(names_loaded(statement) - {name}):
                module = sys.modules.get(module_name)
                if module is not None and loaded in vars(module):
                    self._global(module_name, loaded, vars(module)[loaded])
        return "opaque %s %s" % (
            type(v).__qualname__,
            hashlib.sha256("\n".join(ast.dump(s) for s in statements).encode()).hexdigest(),
        )

    def _instance_types(self, obj, depth):
        """The user classes an object's state holds (instances' code runs in the element; their data does not count)."""
        if depth > 8 or isinstance(obj, PLAIN) or id(obj) in self.seen:
            return
        self.seen[id(obj)] = obj
        cls = type(obj)
        if isinstance(obj, (list, tuple, set, frozenset, dict)):
            items = list(obj.items()) if isinstance(obj, dict) else list(obj)
            for item in items[:1000]:
                self._instance_types(item, depth + 1)
        elif not self.is_installed(cls.__module__) and cls is not self.owner:
            self._class(cls, full=True)
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict) and not isinstance(obj, type):
            for item in state.values():
                self._instance_types(item, depth + 1)

    # -- code, classes --------------------------------------------------------------------------

    def _function(self, f):
        module_name = _module_of(f)
        code = f.__code__
        self._scan(code, f.__globals__, module_name)
        texts = [code_text(code), self.value(f.__defaults__, module_name), self.value(f.__kwdefaults__, module_name)]
        for cell in f.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                texts.append("empty")
                continue
            text = self.value(contents, module_name) if contents is not self.owner else "owner"
            if text is None:
                self._instance_types(contents, 0)
                self.fallback(module_name, "closure of %s" % f.__qualname__)
                text = "opaque"
            texts.append(text)
        self._add("code %s:%s" % (module_name, f.__qualname__), hashlib.sha256("|".join(texts).encode()).hexdigest())

    def _scan(self, code, globals_, module_name):
        """The names a function's code (and the code nested in it) loads, imports and looks up."""
        for instruction, level in instructions(code):
            name = instruction.argval
            if not isinstance(name, str):
                continue
            if name in DYNAMIC:
                self.fallback(module_name, "uses %s" % name)
            if instruction.opname in _ATTR_OPS:
                self.attrs.add(name)
            elif instruction.opname in _GLOBAL_OPS:
                if name in globals_:
                    self._global(module_name, name, globals_[name])
                elif not hasattr(builtins, name):
                    self.fallback(module_name, "unbound global %s" % name)
            elif instruction.opname == "IMPORT_NAME":
                self._import(name, level, globals_, module_name)

    def _import(self, name, level, globals_, module_name):
        try:
            target = resolve_import(name, level, globals_.get("__package__") or "")
        except ImportError:
            self.fallback(module_name, "bad import %s" % name)
            return
        parts = target.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[: i + 1])
            if self.is_installed(prefix):
                continue
            if prefix in sys.modules:
                self.value(sys.modules[prefix], module_name)
            else:
                self.fallback(prefix, "not loaded")

    def _class(self, cls, full):
        """A user class and its bases: members follow in _step (all of them, or those named)."""
        for klass in cls.__mro__:
            if klass is object or self.is_installed(klass.__module__):
                continue
            previous = self.classes.get(klass, (False, set()))
            self.classes[klass] = (full or previous[0], previous[1])
            self._add(
                "class %s:%s" % (klass.__module__, klass.__qualname__),
                ",".join("%s:%s" % (b.__module__, b.__qualname__) for b in klass.__bases__),
            )
            if type(klass) is not type and not self.is_installed(type(klass).__module__):
                self._class(type(klass), full=True)

    def _member(self, cls, name):
        member = vars(cls)[name]
        module_name = cls.__module__
        text = self.value(member, module_name)
        if text is None:
            luigi = sys.modules.get("luigi")
            if luigi is not None and isinstance(member, luigi.Parameter):
                text = "parameter"  # its value is the task's (significant ones are in the job id)
            else:
                text = self._class_attribute(cls, name, member)
        self._add("member %s:%s.%s" % (module_name, cls.__qualname__, name), text)

    def _class_attribute(self, cls, name, member):
        self._instance_types(member, 0)
        try:
            tree = ast.parse(inspect.getsource(cls).strip())
        except (OSError, TypeError, SyntaxError, IndentationError):
            tree = cell_class(cls)
        if tree is None:
            self.fallback(cls.__module__, "opaque %s.%s" % (cls.__qualname__, name))
            return "opaque"
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else tree.body
        return (
            "opaque "
            + hashlib.sha256("\n".join(ast.dump(s) for s in body if name in mentioned(s)).encode()).hexdigest()
        )


def _module_of(f):
    return getattr(f, "__module__", None) or "__main__"
