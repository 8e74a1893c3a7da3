"""Blobs in a bucket name no module of ours that moved: buckets written before the package layout changed
(luigi_kubeface/naming.py became bucket/layout.py, and so on) still unpickle."""

import os
import re

import cloudpickle

from elements import square
from luigi_kubeface import Client
from pipelines import toy
from support import FAST

# The only modules of ours a pickle may name: their path is the same in every layout so far.
STABLE = {"luigi_kubeface.luigi_adapter.tasks"}
OURS = re.compile(rb"luigi_kubeface(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _modules_named(data):
    return {m.decode() for m in OURS.findall(data)}


def test_a_client_jobs_blobs_name_no_module_of_ours(tmp_path):
    root = tmp_path / "root"
    assert list(Client(storage_root=str(root), **FAST).map(square, [1, 2], job_id="pickles")) == [1, 4]
    named = set()
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".pkl"):
                with open(os.path.join(folder, name), "rb") as f:
                    named |= _modules_named(f.read())
    assert named <= STABLE


def test_a_map_tasks_element_function_names_only_the_adapter_of_ours():
    """The function a map task ships is its bound run_element; a class pickled by value (one defined in
    __main__) names its base, KubefaceMapTask, and nothing else of ours."""
    cloudpickle.register_pickle_by_value(toy)
    try:
        named = _modules_named(cloudpickle.dumps(toy.Squares(n=2).run_element))
    finally:
        cloudpickle.unregister_pickle_by_value(toy)
    assert named == STABLE
