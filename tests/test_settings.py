"""Settings are composed: the core keys, each storage's and the selected backend's own settings, one flat section."""

import dataclasses
import pickle

import pytest

from luigi_kubeface import backends
from luigi_kubeface.backends.kubernetes.settings import KubernetesSettings
from luigi_kubeface.backends.simulated import SimulatedBackend
from luigi_kubeface.master.engine import run_job
from luigi_kubeface.errors import ConfigurationError
from luigi_kubeface.job.definition import Job, elements_from_items
from luigi_kubeface.settings import Settings, all_keys
from luigi_kubeface.settings_fields import key_map, setting
from elements import square

POD = dict(backend="kubernetes", image="r/kubeface:1", storage_root="gs://b/jobs")


@dataclasses.dataclass(frozen=True)
class Nomad:
    """A made-up backend's keys."""

    datacenter: str = setting("dc1", "Where the allocations run.")


@dataclasses.dataclass(frozen=True)
class Clash:
    """A made-up backend that declares a key Kubernetes declares already."""

    namespace: str = setting("jobs", "A Nomad namespace.")


def test_a_local_job_never_checks_the_kubernetes_keys():
    settings = Settings(gpus=-5, tolerations="not a list", image_pull_policy="Sometimes")
    assert settings.backend_settings is None
    with pytest.raises(ConfigurationError, match="gpus = -5 is out of range"):
        Settings(**POD, gpus=-5)


def test_the_selected_backend_has_its_own_settings_object_and_its_keys_read_flat():
    settings = Settings(**POD, namespace="team", tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert isinstance(settings.backend_settings, KubernetesSettings)
    assert settings.backend_settings.namespace == settings.namespace == "team"
    assert settings.tolerations == [{"key": "dedicated", "operator": "Exists"}]
    assert not any(f.name == "namespace" for f in dataclasses.fields(Settings))  # not inherited: composed


def test_another_backends_key_is_kept_as_given_and_checked_when_that_backend_is_asked_for():
    """kubeface logs and cleanup read a pod job's cluster from settings whose backend may be local."""
    settings = Settings(namespace="team", kube_context="prod")
    assert (settings.namespace, settings.kube_context, settings.image) == ("team", "prod", "")
    assert settings.settings_of("kubernetes").namespace == "team"
    assert settings.settings_of("local") is None
    with pytest.raises(ConfigurationError, match="gpus = -5 is out of range"):
        Settings(gpus=-5).settings_of("kubernetes")


def test_a_name_no_owner_declares_is_refused_naming_the_known_keys():
    with pytest.raises(ConfigurationError, match="unknown kubeface setting.*gpu: known settings are .*gpus"):
        Settings(gpu=1)
    with pytest.raises(AttributeError, match="'gpu' is not a kubeface setting"):
        _ = Settings().gpu


def test_every_storages_keys_are_checked_since_a_process_opens_storages_by_url():
    with pytest.raises(ConfigurationError, match="s3_addressing_style.*auto, path or virtual"):
        Settings(storage_root="gs://b/jobs", backend="kubernetes", image="r/kubeface:1", s3_addressing_style="dns")
    settings = Settings(s3_region="eu-west-3", gcs_key_secret="gcs-key")
    assert (settings.s3_region, settings.gcs_key_secret) == ("eu-west-3", "gcs-key")
    assert settings.storage_settings["s3"].s3_region == "eu-west-3"


def test_two_owners_declaring_one_key_is_refused_naming_both():
    with pytest.raises(
        ConfigurationError,
        match=r"namespace is declared twice, by the backend kubernetes settings "
        r"\(KubernetesSettings\) and by the backend nomad settings \(Clash\)",
    ):
        key_map((("core", Settings), ("backend kubernetes", KubernetesSettings), ("backend nomad", Clash)))
    with pytest.raises(ConfigurationError, match=r"retries is declared twice, by the core settings \(Settings\)"):
        key_map(
            (
                ("core", Settings),
                (
                    "backend nomad",
                    dataclasses.make_dataclass(
                        "Retrying", [("retries", int, setting(3, "Nomad's own retries."))], frozen=True
                    ),
                ),
            )
        )


def test_a_backend_registered_with_a_key_of_another_owner_fails_before_any_settings_are_made(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "nomad", backends.BackendEntry(lambda settings: None, settings=Clash))
    with pytest.raises(ConfigurationError, match="namespace is declared twice.*KubernetesSettings.*Clash"):
        Settings()


def test_a_registered_backends_own_keys_join_the_flat_section(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "nomad", backends.BackendEntry(lambda settings: None, settings=Nomad))
    settings = Settings(backend="nomad", datacenter="dc2", namespace="team")
    assert settings.backend_settings == Nomad("dc2") and settings.datacenter == "dc2"
    assert settings.namespace == "team" and all_keys()["datacenter"].owner == "backend nomad"


def test_a_setting_without_help_is_refused():
    bare = dataclasses.make_dataclass("Bare", [("zone", str, "a")], frozen=True)
    with pytest.raises(ConfigurationError, match=r"Bare.zone has no help text: declare it as setting\(default, help\)"):
        key_map((("backend bare", bare),))


def test_the_400_pod_ceiling_is_the_kubernetes_backends_only():
    assert Settings(max_in_flight=1000).cap == 1000
    assert Settings(**POD, max_in_flight=400).cap == 400
    with pytest.raises(
        ConfigurationError,
        match=r"max_in_flight = 401 is out of range: it must be between 0 \(the "
        r"backend's default\) and 400 \(Kubernetes misbehaves above\)",
    ):
        Settings(**POD, max_in_flight=401)
    with pytest.raises(ConfigurationError, match="max_in_flight = -1 is out of range"):
        Settings(max_in_flight=-1)


def test_the_simulated_backend_runs_more_than_400_attempts_at_once(tmp_path):
    settings = Settings(storage_root=str(tmp_path), max_in_flight=450, retries=0, poll_interval=0.1)
    job = Job("wide", settings.storage_root, square, elements_from_items(range(450)))
    job.prepare()
    backend = SimulatedBackend(settings, lambda spec: 1.0)
    report = run_job(job, backend, settings, clock=backend.clock, sleep=backend.sleep)
    assert report.progress.succeeded == 450
    assert max(running for _, running in backend.timeline) == 450


def test_replace_and_values_carry_every_owners_keys_across_a_change_of_backend():
    pods = Settings(**POD, namespace="team", gpus=2)
    local = pods.replace(backend="local")
    assert local.backend_settings is None and (local.namespace, local.gpus) == ("team", 2)
    assert local.replace(backend="kubernetes") == pods
    assert Settings(**pods.values()) == pods
    with pytest.raises(ConfigurationError, match="unknown kubeface setting"):
        pods.replace(retry=3)


def test_settings_survive_pickling_with_their_composed_parts():
    settings = Settings(**POD, namespace="team", s3_region="eu-west-3")
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings and copy.namespace == "team" and copy.s3_region == "eu-west-3"
