import subprocess
import sys

import numpy as np
import pytest

from luigi_kubeface import naming
from luigi_kubeface.errors import ConfigurationError


def test_element_key_ignores_dict_order_and_distinguishes_types():
    assert naming.element_key((), {"a": 1, "b": 2.5}) == naming.element_key((), {"b": 2.5, "a": 1})
    assert naming.element_key((), {"a": 1}) != naming.element_key((), {"a": 1.0})
    assert naming.element_key((), {"a": [1, 2]}) != naming.element_key((), {"a": (1, 2)})
    assert naming.element_key((), {"a": np.float64(0.5)}) == naming.element_key((), {"a": 0.5})


def test_element_key_is_stable_across_processes():
    code = "from luigi_kubeface import naming; print(naming.element_key((), {'m': 'svm', 'c': {'x': (1, None)}}))"
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout.strip() for seed in (1, 2)}
    assert keys == {naming.element_key((), {"m": "svm", "c": {"x": (1, None)}})}


def test_job_ids_are_checked():
    assert naming.job_id_from_task_id("Train(models=[a, b])_abc") == "Train_models=_a__b___abc"
    with pytest.raises(ConfigurationError, match="not usable as a storage prefix"):
        naming.check_job_id("../escape")


def test_quarantine_keys_stay_out_of_the_results_listing_and_never_repeat():
    first, second = naming.quarantine_key(naming.result_key("abc")), naming.quarantine_key(naming.result_key("abc"))
    assert first.startswith(naming.QUARANTINE_PREFIX + naming.RESULTS_PREFIX + "abc.pkl.")
    assert first != second and naming.element_from_result_key(first) is None


def test_job_id_from_url_inverts_job_url():
    assert naming.job_id_from_url(naming.job_url("gs://b/root/", "j-1")) == "j-1"
    assert naming.job_id_from_url("gs://b/root/j-1/") == "j-1"
