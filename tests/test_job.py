"""Grids are validated before anything is launched, with errors that name the element and the fix."""

import threading

import pytest

from luigi_kubeface.errors import ConfigurationError
from luigi_kubeface.job.definition import Job, elements_from_grid


def test_grid_elements_keep_order_and_stable_keys():
    elements = elements_from_grid([dict(a=2), dict(a=1)])
    assert [e.label for e in elements] == ["a=2", "a=1"]
    assert [e.key for e in elements] == [e.key for e in elements_from_grid([dict(a=2), dict(a=1)])]


@pytest.mark.parametrize(
    "grid,message",
    [
        ({"a": 1}, "grid\\(\\) returned a dict: it must return a list of dicts"),
        ("abc", "returned a str"),
        ([dict(a=1), 5], "grid element 1 is a int \\(5\\): every grid element must be a dict"),
        ([{"not valid": 1}], "not valid argument names"),
        ([dict(a=1), dict(a=2), dict(a=1)], "grid elements 0 and 2 are identical \\(a=1\\)"),
        ([dict(a=threading.Lock())], "grid element 0 \\(a=<unlocked _thread.lock.*cannot be pickled"),
        ([dict(self=1, a=2)], "grid element 0 has a key named 'self', .*rename that parameter"),
        (
            [dict(a=1), dict(a=lambda x: x)],
            "grid element 1 \\(a=<function <lambda>.*\\): a value of type "
            "builtins.function cannot be encoded into a stable element key: .*Define functions and classes at module level",
        ),
    ],
)
def test_bad_grids_are_refused(grid, message):
    with pytest.raises(ConfigurationError, match=message):
        elements_from_grid(grid)


def test_an_empty_grid_is_a_map_over_nothing():
    assert elements_from_grid([]) == [] and elements_from_grid(iter(())) == []


def test_oversized_arguments_point_to_shared_inputs():
    with pytest.raises(ConfigurationError, match="pass large data once as a shared input"):
        elements_from_grid([dict(data=b"x" * (65 * 1024 * 1024))])


def test_shared_input_named_like_a_parameter_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="shared input name\\(s\\) a are also grid parameters"):
        Job("j", str(tmp_path), len, elements_from_grid([dict(a=1)]), shared={"a": 2}).prepare()
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_a_grid_of_plain_data_is_pickled_byte_for_byte_as_cloudpickle_pickles_it():
    """Plain data skips cloudpickle's per-call set-up (building a 50,000-element grid); what ships is the same."""
    import enum

    import cloudpickle

    class Colour(enum.Enum):
        RED = 1

    grid = [dict(x=1, y=2.5, s="a", b=b"x", n=None, t=True, l=[1, (2, {"k": [3]})]), dict(c=Colour.RED, f=len)]
    for element, params in zip(elements_from_grid(grid), grid):
        assert element.payload == cloudpickle.dumps(((), params))
        assert cloudpickle.loads(element.payload) == ((), params)


def test_a_grid_of_scalars_is_walked_once_for_its_key_and_not_again_for_its_payload(monkeypatch):
    """The scalar key path already proves the arguments plain: walking them again cost a third of building
    a 50,000-element grid (a rerun's complete()). Keys and bytes stay those of the general paths."""
    import cloudpickle

    from luigi_kubeface.job import definition, identity

    walked = []
    real = definition._plain_data
    monkeypatch.setattr(definition, "_plain_data", lambda value, depth=0: walked.append(1) or real(value, depth))
    grid = [dict(x=i, s="s%d" % i, t=bool(i % 2), n=None) for i in range(100)]
    elements = elements_from_grid(grid)
    assert walked == []
    for element, params in zip(elements, grid):
        assert element.payload == cloudpickle.dumps(((), params))
        assert element.key == identity.element_key((), params)
    elements_from_grid([dict(x=1.5)])  # a float is no exact scalar for the key: walked as before
    assert walked
