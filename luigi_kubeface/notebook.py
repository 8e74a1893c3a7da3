"""Client.map from IPython and Jupyter: is this a kernel, and the source of `__main__`, made of cells.

A function or class defined in a cell lives in `__main__`, which has no file: cloudpickle ships it by
value, and its code version is its bytecode (job/code/reach.py). The values it loads from other cells
(an array, a model configured in a cell) count by the statements that made them, as for a script; in
IPython those statements are in the cells this session ran (`In`), not in a file. The cells count
by their distinct statements, each at its last run: running the same cell again changes nothing,
editing a cell that made a value the function loads changes the version, and a cell that only shows
a value (`x.shape`) counts for nothing.
"""

import ast
import functools
import sys


def shell():
    """The running IPython shell (a terminal or a Jupyter kernel), or None; never imports IPython."""
    ipython = sys.modules.get("IPython")
    try:
        return ipython.get_ipython() if ipython is not None else None
    except Exception:  # noqa: BLE001 - a half-imported or foreign IPython: no shell
        return None


def in_kernel():
    """True in a Jupyter kernel (ipykernel): stderr is the notebook's output, not a terminal."""
    return getattr(shell(), "kernel", None) is not None


def main_tree():
    """The top-level statements of the cells this IPython session ran, as one module (ast.Module), or
    None outside IPython or when `__main__` is not the shell's namespace (a script run by %run -n)."""
    current = shell()
    main = sys.modules.get("__main__")
    if current is None or main is None or getattr(current, "user_module", None) is not main:
        return None
    cells = tuple(getattr(getattr(current, "history_manager", None), "input_hist_parsed", None) or ())
    return _tree(cells)


@functools.lru_cache(maxsize=4)
def _tree(cells):
    """One module of the cells' distinct statements, each at its last run (reach.py asks once per global)."""
    latest = {}  # the statement's text -> the statement (dicts keep insertion order)
    for cell in cells:
        for text, statement in _statements(cell):
            latest.pop(text, None)
            latest[text] = statement
    return ast.Module(body=list(latest.values()), type_ignores=[])


@functools.lru_cache(maxsize=4096)
def _statements(cell):
    """A cell's top-level statements with their text, but those that only show a value (`x`, `x.shape`,
    `print(x)`): looking at a value in a notebook does not make it. None when the cell does not parse (the
    kernel did not run it either)."""
    try:
        return tuple(
            (ast.dump(statement), statement) for statement in ast.parse(cell).body if not _shows_only(statement)
        )
    except (SyntaxError, ValueError):
        return ()


_SHOWN = (ast.Name, ast.Attribute, ast.Subscript, ast.Constant)


def _shows_only(statement):
    if not isinstance(statement, ast.Expr):
        return False
    value = statement.value
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in ("print", "display"):
        return not value.keywords and all(isinstance(a, _SHOWN) for a in value.args)
    return isinstance(value, _SHOWN)
