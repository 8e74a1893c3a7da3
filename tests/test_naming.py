import dataclasses
import enum
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.job import identity
from luigi_kubeface.errors import ConfigurationError
from support import REPO, element_from_result_key


def test_element_key_ignores_dict_order_and_distinguishes_types():
    assert identity.element_key((), {"a": 1, "b": 2.5}) == identity.element_key((), {"b": 2.5, "a": 1})
    assert identity.element_key((), {"a": 1}) != identity.element_key((), {"a": 1.0})
    assert identity.element_key((), {"a": [1, 2]}) != identity.element_key((), {"a": (1, 2)})
    assert identity.element_key((), {"a": np.float64(0.5)}) == identity.element_key((), {"a": 0.5})


def test_element_key_is_stable_across_processes():
    code = (
        "from luigi_kubeface.job import identity; print(identity.element_key((), {'m': 'svm', 'c': {'x': (1, None)}}))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout.strip()
        for seed in (1, 2)
    }
    assert keys == {identity.element_key((), {"m": "svm", "c": {"x": (1, None)}})}


def test_job_ids_are_checked():
    assert naming.job_id_from_task_id("Train(models=[a, b])_abc") == "Train_models=_a__b___abc"
    with pytest.raises(ConfigurationError, match="not usable as a storage prefix"):
        naming.check_job_id("../escape")


def test_quarantine_keys_stay_out_of_the_results_listing_and_never_repeat():
    first, second = naming.quarantine_key(naming.result_key("abc")), naming.quarantine_key(naming.result_key("abc"))
    assert first.startswith(naming.QUARANTINE_PREFIX + naming.RESULTS_PREFIX + "abc.pkl.")
    assert first != second and element_from_result_key(first) is None


def test_job_id_from_url_inverts_job_url():
    assert naming.job_id_from_url(naming.job_url("gs://b/root/", "j-1")) == "j-1"
    assert naming.job_id_from_url("gs://b/root/j-1/") == "j-1"


class Colour(enum.IntEnum):
    RED = 1


class Shape(enum.Enum):
    SQUARE = "square"


@dataclasses.dataclass
class Config:
    depth: int
    tags: frozenset


class Opaque:
    def __init__(self, members):
        self.members = members


def key(value):
    return identity.element_key((), {"v": value})


def test_keys_of_plain_values_never_change_so_existing_buckets_keep_their_results():
    pinned = {  # computed by the first released encoding: a change orphans every stored result
        None: "602a576593e9720e69c24076",
        True: "1a4caf850419b8d5b73c1535",
        3: "cc5705c7658b0f2184b6bd80",
        "svm": "c4a5c05bc213906f4520e981",
        0.1: "a65b03da1b7dc38e1be642f3",
        b"ab": "15a67d67c29568273562771a",
    }
    for value, expected in pinned.items():
        assert key(value) == expected, value
    assert key([1, "a"]) == "08e7f5a94fddab06894bbe1d"
    assert key((1, None)) == "59d7bbd0ff07ab0f9451df20"
    assert key({"x": (1, None), "y": [2.5]}) == "e8038fcd4f269c827a3d6067"
    assert key({2: "a", 1: "b"}) == "cbd81502f7fc89fc4dc42f7d"
    assert key({1.5: "a"}) == "22668cc043e2b0bc6e94b4f1"
    assert key(np.int64(4)) == "4d6f99e096708d84a5f6d8dc"
    assert key(np.float32(0.5)) == "6a89c58ec37f5354566a2053"
    assert identity.element_key((3,), {}) == "5802794c8bcca9a491e148a8"


ODD_VALUES = (
    "[{3, 'a', (1, 2)}, frozenset({2.5, None}), {1.5: 'a', 2.5: 'b'}, {(1, 2): 'x', 'y': 3, 4: {5}},"
    " tests_naming_values.Colour.RED, tests_naming_values.Shape.SQUARE,"
    " tests_naming_values.Config(2, frozenset({'a', 'b', 'c'})), tests_naming_values.Opaque({'p', 'q', 'r'})]"
)


def test_sets_enums_dataclasses_and_odd_dict_keys_have_one_key_in_every_process(tmp_path):
    (tmp_path / "tests_naming_values.py").write_text(
        "import dataclasses, enum\n" + "\n".join(inspect.getsource(c) for c in (Colour, Shape, Config, Opaque))
    )
    code = (
        "import tests_naming_values; from luigi_kubeface.job import identity\n"
        "print([identity.element_key((), {'v': v}) for v in %s])" % ODD_VALUES
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
            env=dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=os.pathsep.join([str(tmp_path), REPO])),
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(outputs) == 1
    assert len(set(eval(outputs.pop()))) == 8


def test_enum_members_and_sets_do_not_share_keys_with_their_plain_values():
    assert key(Colour.RED) != key(1)
    assert key(Shape.SQUARE) != key("square")
    assert key({1, 2}) != key(frozenset({1, 2})) != key([1, 2])
    assert key({1, 2}) == key({2, 1})
    assert key(Config(1, frozenset())) != key(Config(2, frozenset()))


def test_values_with_mixed_or_unorderable_dict_keys_get_a_key():
    assert key({1.5: "a", 2.5: "b"}) == key({2.5: "b", 1.5: "a"})
    assert key({(1, 2): "a", (0, 5): "b"}) == key({(0, 5): "b", (1, 2): "a"})
    assert key({1: "a", "1": "b", None: 3}) == key({None: 3, "1": "b", 1: "a"})


def test_values_plain_pickle_refuses_are_refused_with_the_fix():
    class Local:
        pass

    for value in (lambda x: x, Local()):
        with pytest.raises(
            ConfigurationError,
            match="cannot be encoded into a stable element key: plain pickle "
            "refuses it .*Define functions and classes at module level .*shared input",
        ):
            key(value)


def test_attempt_numbers_go_on_across_runs_and_ids_of_main_count_on():
    ids = ["001-1700000003-aaaaaaaaaaaa", "001-1700000001-bbbbbbbbbbbb", "001-1700000002-cccccccccccc"]  # main's
    assert [n for n, _ in naming.numbered_attempts(ids)] == [1, 2, 3]
    assert [a for _, a in naming.numbered_attempts(ids)] == sorted(ids)  # oldest first
    assert naming.next_attempt_number(ids) == 4 and naming.next_attempt_number([]) == 1
    late = ["999-1700000001-aaaaaaaaaaaa", "1000-1700000002-bbbbbbbbbbbb"]
    assert [n for n, _ in naming.numbered_attempts(late)] == [999, 1000]  # numbers, not text: 1000 follows 999
    assert all(naming.is_attempt_id(naming.new_attempt_id(n)) for n in (1, 1000))


def test_the_direct_key_text_of_scalar_arguments_is_the_general_encodings_text():
    """Scalars skip the general encoding (a 50,000-element grid's keys): the text, hence every key, is the same."""
    samples = [
        ((), {"x": 1}),
        ((), {"b": 'é\n"x\u2028', "a": -(10**40), "c": True, "d": None, "e": False}),
        (("a", 3), {}),
        ((1,), {"z": "y"}),
        ((), {}),
        ((1.5,), {}),
        ((), {"x": 1.5}),
        ((), {"x": [1]}),
        ((True,), {"k": 0}),
        ((np.int64(3),), {}),
        ((), {"x": np.int64(3)}),
    ]
    for args, kwargs in samples:
        general = identity._KEY_TEXT.encode([identity._canonical(list(args)), identity._canonical(dict(kwargs))])
        assert identity._scalar_key_text(args, kwargs) in (general, None), (args, kwargs)
    assert identity._scalar_key_text((), {"x": 1}) is not None and identity._scalar_key_text((1.5,), {}) is None
