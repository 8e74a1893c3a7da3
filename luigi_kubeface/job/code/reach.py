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
"""

import ast
import builtins
import dis
import hashlib
import inspect
import sys
import types

from luigi_kubeface import notebook

# Names whose use means any attribute or global may be reached: the analysis gives up on that module.
DYNAMIC = frozenset({"getattr", "setattr", "delattr", "globals", "locals", "vars", "eval", "exec", "compile",
                     "__import__", "import_module", "__dict__", "__getattribute__", "modules", "reload"})
_ATTR_OPS = {"LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "DELETE_ATTR", "IMPORT_FROM", "LOAD_SUPER_ATTR"}
_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"}
_PLAIN = (type(None), bool, int, float, complex, str, bytes)
# Class entries that are not code: editing a docstring of a class recomputes nothing.
_NOT_CODE = {"__doc__", "__module__", "__qualname__", "__dict__", "__weakref__", "__annotations__",
             "__abstractmethods__", "__firstlineno__", "__static_attributes__", "_abc_impl"}


def _text(value):
    data = value if isinstance(value, bytes) else repr(value).encode()
    return "%s:%s" % (type(value).__name__, hashlib.sha256(data).hexdigest()[:24] if len(data) > 64 else data)


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
        if isinstance(v, _PLAIN):
            return _text(v)
        if depth > 50:
            self.fallback(module, "deep value")
            return "deep"
        if isinstance(v, (list, tuple, set, frozenset)):
            texts = [self.value(x, module, depth + 1) for x in v]
            return "%s[%s]" % (type(v).__name__, ",".join(sorted(texts) if isinstance(v, (set, frozenset)) else texts))
        if isinstance(v, dict):
            return "dict{%s}" % ",".join(sorted("%s:%s" % (self.value(k, module, depth + 1), self.value(x, module, depth + 1))
                                                for k, x in v.items()))
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
        source = _source_tree(module_name)
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
        source = _source_tree(module_name)
        if source is None or name in source.declared_global:
            self.fallback(module_name, "opaque %s" % name)
            return "opaque %s" % type(v).__qualname__
        statements = [s for s in source.tree.body if name in _mentioned(s)]
        for statement in statements:  # what those statements load is reached too
            for loaded in sorted(_loaded(statement) - {name}):
                module = sys.modules.get(module_name)
                if module is not None and loaded in vars(module):
                    self._global(module_name, loaded, vars(module)[loaded])
        return "opaque %s %s" % (type(v).__qualname__,
                                 hashlib.sha256("\n".join(ast.dump(s) for s in statements).encode()).hexdigest())

    def _instance_types(self, obj, depth):
        """The user classes an object's state holds (instances' code runs in the element; their data does not count)."""
        if depth > 8 or isinstance(obj, _PLAIN) or id(obj) in self.seen:
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
        texts = [_code_text(code), self.value(f.__defaults__, module_name), self.value(f.__kwdefaults__, module_name)]
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
        for instruction, level in _instructions(code):
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
            target = _resolve(name, level, globals_.get("__package__") or "")
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
            self._add("class %s:%s" % (klass.__module__, klass.__qualname__),
                      ",".join("%s:%s" % (b.__module__, b.__qualname__) for b in klass.__bases__))
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
            tree = _cell_class(cls)
        if tree is None:
            self.fallback(cls.__module__, "opaque %s.%s" % (cls.__qualname__, name))
            return "opaque"
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else tree.body
        return "opaque " + hashlib.sha256("\n".join(ast.dump(s) for s in body if name in _mentioned(s)).encode()).hexdigest()


# -- helpers ------------------------------------------------------------------------------------

def _cell_class(cls):
    """A class defined in an IPython cell (no file for inspect): its last definition among the cells run."""
    source = _source_tree(cls.__module__) if cls.__module__ == "__main__" else None
    found = [s for s in source.tree.body if isinstance(s, ast.ClassDef) and s.name == cls.__qualname__] \
        if source else []
    return ast.Module(body=found[-1:], type_ignores=[]) if found else None


def _module_of(f):
    return getattr(f, "__module__", None) or "__main__"


def _code_text(code):
    """The code's behaviour, not where it sits: no line numbers, so an edit above it changes nothing."""
    parts = [code.co_code.hex(), repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                                       code.co_argcount, code.co_kwonlyargcount, code.co_flags))]
    for const in code.co_consts:
        parts.append(_code_text(const) if isinstance(const, types.CodeType) else _text(const)
                     if isinstance(const, _PLAIN) else repr(const))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _instructions(code):
    """(instruction, import level) of the code and every code nested in it."""
    level = 0
    consts = []
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_CONST":
            consts.append(instruction.argval)
        if instruction.opname == "IMPORT_NAME":
            level = consts[-2] if len(consts) >= 2 and isinstance(consts[-2], int) else 0
        yield instruction, level
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _instructions(const)


def _resolve(name, level, package):
    if not level:
        return name
    import importlib.util

    return importlib.util.resolve_name("." * level + name, package) if name else \
        importlib.util.resolve_name("." * level, package)


class _Source:
    def __init__(self, tree):
        self.tree = tree
        self.star = any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree))
        self.declared_global = {name for n in ast.walk(tree) if isinstance(n, ast.Global) for name in n.names}


_SOURCES = {}


def _source_tree(module_name):
    """The parsed source of a loaded module (None without one), cached by file and modification time."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module_name == "__main__" and not path:  # IPython, Jupyter: the cells this session ran
        tree = notebook.main_tree()  # the same object while no cell runs
        if tree is None:
            return None
        if ("cells",) not in _SOURCES or _SOURCES[("cells",)].tree is not tree:
            _SOURCES[("cells",)] = _Source(tree)
        return _SOURCES[("cells",)]
    if not path or not path.endswith(".py"):
        return None
    try:
        import os

        key = (path, os.stat(path).st_mtime_ns)
        if key not in _SOURCES:
            with open(path, "rb") as f:
                _SOURCES[key] = _Source(ast.parse(f.read()))
        return _SOURCES[key]
    except (OSError, SyntaxError, ValueError):
        return None


def _top_level_nodes(statement):
    """The nodes a statement runs at import: not the bodies of the functions and classes it defines
    (their names, decorators, defaults and bases, yes)."""
    stack = [statement]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack += node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]
        elif isinstance(node, ast.ClassDef):
            stack += node.decorator_list + node.bases + [k.value for k in node.keywords]
        elif isinstance(node, ast.Lambda):
            stack += node.args.defaults
        else:
            stack += list(ast.iter_child_nodes(node))


def _mentioned(statement):
    """Every name a statement binds or uses at import."""
    names = set()
    for node in _top_level_nodes(statement):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def _loaded(statement):
    return {node.id for node in _top_level_nodes(statement) if isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)}
