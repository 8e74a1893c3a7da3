"""How reach.py reads code: a function's code as a digest of its behaviour (no line numbers, so an edit
above it changes nothing), its instructions with the level of each relative import, plain values' text."""

import dis
import hashlib
import types

# Values whose text is their own (repr, or a digest of a long one): nothing in them can be followed.
PLAIN = (type(None), bool, int, float, complex, str, bytes)


def plain_text(value):
    """A plain value's text: its type and repr, a digest of the repr when it is long."""
    data = value if isinstance(value, bytes) else repr(value).encode()
    return "%s:%s" % (type(value).__name__, hashlib.sha256(data).hexdigest()[:24] if len(data) > 64 else data)


def code_text(code):
    """The code's behaviour, not where it sits: no line numbers, so an edit above it changes nothing."""
    parts = [
        code.co_code.hex(),
        repr(
            (
                code.co_names,
                code.co_varnames,
                code.co_freevars,
                code.co_cellvars,
                code.co_argcount,
                code.co_kwonlyargcount,
                code.co_flags,
            )
        ),
    ]
    for const in code.co_consts:
        parts.append(
            code_text(const)
            if isinstance(const, types.CodeType)
            else plain_text(const)
            if isinstance(const, PLAIN)
            else repr(const)
        )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def instructions(code):
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
            yield from instructions(const)


def resolve_import(name, level, package):
    """The absolute name of an import (level: how many dots it had) made in package."""
    if not level:
        return name
    import importlib.util

    return (
        importlib.util.resolve_name("." * level + name, package)
        if name
        else importlib.util.resolve_name("." * level, package)
    )
