"""The parsed source of a module the master has loaded (a file's, or the notebook cells'), cached, and the
names its top-level statements mention: reach.py knows a module-level value by the statements that made it."""

import ast
import os
import sys

from luigi_kubeface import notebook


class Source:
    """A module's tree, whether it star-imports (reach counts it whole) and the names it declares global."""

    def __init__(self, tree):
        self.tree = tree
        self.star = any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree))
        self.declared_global = {name for n in ast.walk(tree) if isinstance(n, ast.Global) for name in n.names}


_SOURCES = {}


def source_tree(module_name):
    """The parsed source of a loaded module (None without one), cached by file and modification time."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module_name == "__main__" and not path:  # IPython, Jupyter: the cells this session ran
        tree = notebook.main_tree()  # the same object while no cell runs
        if tree is None:
            return None
        if ("cells",) not in _SOURCES or _SOURCES[("cells",)].tree is not tree:
            _SOURCES[("cells",)] = Source(tree)
        return _SOURCES[("cells",)]
    if not path or not path.endswith(".py"):
        return None
    try:
        key = (path, os.stat(path).st_mtime_ns)
        if key not in _SOURCES:
            with open(path, "rb") as f:
                _SOURCES[key] = Source(ast.parse(f.read()))
        return _SOURCES[key]
    except (OSError, SyntaxError, ValueError):
        return None


def top_level_nodes(statement):
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


def mentioned(statement):
    """Every name a statement binds or uses at import."""
    names = set()
    for node in top_level_nodes(statement):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def names_loaded(statement):
    """The names a statement loads at import."""
    return {
        node.id for node in top_level_nodes(statement) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }


def cell_class(cls):
    """A class defined in an IPython cell (no file for inspect): its last definition among the cells run."""
    source = source_tree(cls.__module__) if cls.__module__ == "__main__" else None
    found = (
        [s for s in source.tree.body if isinstance(s, ast.ClassDef) and s.name == cls.__qualname__] if source else []
    )
    return ast.Module(body=found[-1:], type_ignores=[]) if found else None
