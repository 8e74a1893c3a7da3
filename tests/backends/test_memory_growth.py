"""oom_memory_factor and spot_fallback_after, as pure functions: the pod an element's next attempt gets."""

import dataclasses

import pytest

from luigi_kubeface.backends import AttemptSpec
from luigi_kubeface.backends.kubernetes.pod_spec import build_pod
from luigi_kubeface.backends.kubernetes.pod_status import pod_end
from luigi_kubeface.errors import ConfigurationError
from kube_support import pod_settings

SPEC = AttemptSpec("grid", "gs://b/jobs/grid", "0123456789abcdef01234567", "001-1764400000-a1b2c3", "i=1")


def resources(config, **history):
    pod = build_pod(dataclasses.replace(SPEC, **history), config)
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return container["resources"], env, pod["spec"]


def oom_killed(limit):
    return {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"resources": {"limits": {"memory": limit}}}]},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "runner", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ],
        },
    }


GROWS = dict(memory_request="512Mi", memory_limit="1Gi", oom_memory_factor=2, max_memory_limit="3Gi")


def test_each_oom_multiplies_the_request_and_limit_up_to_the_ceiling():
    config = pod_settings(**GROWS)
    seen = []
    for ooms in range(4):
        got, env, _ = resources(config, out_of_memory=ooms)
        seen.append((got["requests"]["memory"], got["limits"]["memory"], env["KUBEFACE_MEMORY_LIMIT"]))
    assert seen == [("512Mi", "1Gi", "1Gi"), ("1Gi", "2Gi", "2Gi"), ("2Gi", "3Gi", "3Gi"), ("3Gi", "3Gi", "3Gi")]


def test_without_the_factor_an_oom_changes_nothing():
    got, env, _ = resources(pod_settings(memory_limit="1Gi"), out_of_memory=3)
    assert got["limits"]["memory"] == "1Gi" and env["KUBEFACE_MEMORY_LIMIT"] == "1Gi"


def test_an_oom_below_the_ceiling_asks_for_more_memory_and_at_the_ceiling_fails_as_before():
    config = pod_settings(**GROWS)
    below = pod_end(oom_killed("2Gi"), 0, config)
    assert below.more_memory and below.error_type == "OutOfMemory" and "next attempt gets 3Gi" in below.reason
    at = pod_end(oom_killed("3Gi"), 0, config)
    assert not at.more_memory and not at.retryable
    assert (
        "limit of 3Gi (max_memory_limit: it may grow no more)" in at.reason
        and "raise [kubeface] memory_limit" in at.reason
    )
    plain = pod_end(oom_killed("1Gi"), 0, pod_settings(memory_limit="1Gi"))
    assert not plain.more_memory and "limit of 1Gi and was OOMKilled; raise [kubeface] memory_limit" in plain.reason


@pytest.mark.parametrize(
    "values, words",
    [
        (dict(oom_memory_factor=2), "oom_memory_factor = 2 needs max_memory_limit"),
        (dict(oom_memory_factor=2, max_memory_limit="lots"), "needs max_memory_limit"),
        (dict(oom_memory_factor=0.5, max_memory_limit="4Gi"), "oom_memory_factor"),
        (dict(oom_memory_factor=2, memory_limit="8Gi", max_memory_limit="4Gi"), "below the memory a pod starts with"),
        (dict(spot_fallback_after=-1), "spot_fallback_after"),
    ],
)
def test_bad_growth_settings_are_refused_with_the_fix(values, words):
    with pytest.raises(ConfigurationError) as caught:
        pod_settings(**values)
    assert words in str(caught.value)


def test_after_spot_fallback_after_preemptions_the_element_runs_off_spot():
    config = pod_settings(spot=True, spot_fallback_after=2)
    placements = []
    for interruptions in range(4):
        _, env, spec = resources(config, interruptions=interruptions)
        spot_selector = (spec.get("nodeSelector") or {}).get("cloud.google.com/gke-spot")
        tolerated = any(t.get("key") == "cloud.google.com/gke-spot" for t in spec["tolerations"])
        placements.append((spot_selector, tolerated, env["KUBEFACE_SPOT"]))
    assert placements == [("true", True, "true")] * 2 + [(None, False, "false")] * 2
    _, env, spec = resources(pod_settings(spot=True), interruptions=50)  # 0: stays on spot
    assert spec["nodeSelector"]["cloud.google.com/gke-spot"] == "true" and env["KUBEFACE_SPOT"] == "true"
