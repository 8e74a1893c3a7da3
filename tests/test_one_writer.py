"""Attempt records and logs have one writer, luigi_kubeface/bucket/attempts.py: the runner, the master, the
backends and the tools all write them through it, in one format. Read from the package's own source."""

import ast
import os

from support import REPO

PACKAGE = os.path.join(REPO, "luigi_kubeface")
WRITER = os.path.join("bucket", "attempts.py")
KEY_BUILDERS = {"attempt_record_key", "log_key", "attempts_prefix"}
WRITES = {"write", "write_if_absent", "write_if_generation", "write_stream", "write_stream_if_absent", "move"}


def _name(node):
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None


def _writes_of_attempt_keys(source):
    """Lines where a storage write's arguments are built from an attempt record's or log's key, directly or
    through a variable assigned from one (in the same function)."""
    found = []
    for scope in ast.walk(ast.parse(source)):
        if not isinstance(scope, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        nodes = list(ast.walk(scope))
        keys = {
            target.id
            for node in nodes
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
            and any(isinstance(n, ast.Call) and _name(n.func) in KEY_BUILDERS for n in ast.walk(node.value))
        }
        for node in nodes:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
                used = [n for arg in node.args + [k.value for k in node.keywords] for n in ast.walk(arg)]
                if any(isinstance(n, ast.Call) and _name(n.func) in KEY_BUILDERS for n in used) or any(
                    isinstance(n, ast.Name) and n.id in keys for n in used
                ):
                    found.append(node.lineno)
    return sorted(set(found))


def _package_sources():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    yield os.path.relpath(path, PACKAGE), f.read()


def test_no_module_but_bucket_attempts_writes_an_attempt_record_or_log():
    others = {
        path: lines
        for path, source in _package_sources()
        if path != WRITER
        for lines in [_writes_of_attempt_keys(source)]
        if lines
    }
    assert others == {}


def test_bucket_attempts_writes_both_records_and_logs():
    with open(os.path.join(PACKAGE, WRITER)) as f:
        source = f.read()
    assert len(_writes_of_attempt_keys(source)) >= 3  # a record, a record if absent, a log


def test_the_check_finds_a_write_of_an_attempt_key_directly_or_through_a_variable():
    """As runner.py and backends/simulated.py wrote records before there was one writer."""
    direct = "def f(storage, e, a, data):\n    storage.write_if_absent(naming.attempt_record_key(e, a), data)\n"
    through = "def g(storage, e, a, data):\n    key = naming.log_key(e, a)\n    storage.write(key, data)\n"
    assert _writes_of_attempt_keys(direct) == [2] and _writes_of_attempt_keys(through) == [3]
    assert _writes_of_attempt_keys("def h(storage, e, a):\n    return storage.read(naming.log_key(e, a))\n") == []


def test_every_module_spells_the_attempt_keys_through_the_layout():
    """No module writes the prefixes by hand: "attempts/" and "logs/" are spelt in bucket/layout.py only."""
    spelt = [
        path
        for path, source in _package_sources()
        if path != os.path.join("bucket", "layout.py")
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(("attempts/", "logs/"))
    ]
    assert spelt == []
