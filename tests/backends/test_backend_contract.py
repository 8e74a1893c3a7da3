"""One suite of checks run against every compute backend: local processes, the simulated backend,
and Kubernetes pods (on the test cluster, tests/cluster: slow).

What the engine relies on (backends/__init__.py Backend): launch then poll reports each ended
attempt once, with its exit code; a cancelled attempt is never reported; started() is None or a
time at or after launch, and known once the attempt runs; adopt() finds nothing for a new job;
close() leaves nothing running. A backend serves one job.
"""

import time

import pytest

from luigi_kubeface.bucket import layout as naming
from luigi_kubeface.backends import AttemptSpec
from luigi_kubeface.job.definition import Job, elements_from_items
from luigi_kubeface.bucket.signing import KeyRing
from luigi_kubeface.settings import Settings
from kube_support import kube_settings, nap, pods, wait_until
from support import process_argvs

LONG = 120  # seconds an attempt meant to be cancelled or closed would run


def nap_or_fail(seconds):
    """Sleeps that long; a negative number fails, as an element that raises does."""
    if seconds < 0:
        raise ValueError("element %s fails on purpose" % seconds)
    return nap(seconds)


class Harness:
    """One backend under test: how to make it, where its jobs live, and what of it still runs."""

    timeout = 60.0  # seconds to wait for an attempt to end or start

    def __init__(self, settings, tmp_path):
        self.settings = settings
        self.keys = KeyRing(key_dir=str(tmp_path / "keys"))
        self.backends = []

    def open(self):
        backend = self.make()
        self.backends.append(backend)
        return backend

    def job(self, function, items, job_id="contract"):
        """A prepared job (its function, code and inputs in storage) and one first-attempt spec per item."""
        job = Job(
            job_id,
            self.settings.storage_root,
            function,
            elements_from_items(items),
            keys=self.keys,
            settings=self.settings,
        )
        job.prepare(details=self.settings.job_details())
        specs = []
        for element in job.elements:
            job.store.write_input(element, job.shared_keys, job.code_version)
            specs.append(
                AttemptSpec(
                    job.id,
                    job.url,
                    element.key,
                    naming.new_attempt_id(1),
                    element.label,
                    secret_env=job.store.secret_env(),
                )
            )
        return job, specs


class LocalHarness(Harness):
    def make(self):
        from luigi_kubeface.backends.local import LocalBackend

        return LocalBackend(self.settings)

    def running(self, job, backend, specs):
        """Attempts whose runner process still exists (its argv names the attempt)."""
        return {s.attempt for _, argv in process_argvs() for s in specs if s.attempt.encode() in argv}


class SimulatedHarness(Harness):
    def make(self):
        from luigi_kubeface.backends.simulated import SimulatedBackend

        return SimulatedBackend(self.settings, duration=lambda spec: float(spec.label))

    def running(self, job, backend, specs):
        return set(range(backend.timeline[-1][1]))  # attempts running on its virtual clock


class KubernetesHarness(Harness):
    timeout = 180.0  # pods are scheduled and started by the test node agent

    def __init__(self, settings, tmp_path, cluster, namespace):
        super().__init__(settings, tmp_path)
        self.cluster, self.namespace = cluster, namespace

    def make(self):
        from luigi_kubeface.backends.kubernetes.backend import KubernetesBackend

        return KubernetesBackend(self.settings)

    def running(self, job, backend, specs):
        """Pods of the job that still exist (Terminating ones too: they may still write)."""
        return {
            p["metadata"]["name"]
            for p in pods(self.cluster, self.namespace)
            if p["metadata"]["annotations"].get("kubeface.io/job-url") == job.url
        }


@pytest.fixture(params=["local", "simulated", pytest.param("kubernetes", marks=pytest.mark.slow)])
def harness(request, tmp_path):
    if request.param == "kubernetes":
        cluster, namespace = request.getfixturevalue("kube_cluster"), request.getfixturevalue("kube_namespace")
        settings = kube_settings(
            cluster,
            namespace,
            request.getfixturevalue("fake_gcs"),
            request.getfixturevalue("gcs_root"),
            key_dir=str(tmp_path / "keys"),
        )
        harness = KubernetesHarness(settings, tmp_path, cluster, namespace)
    else:
        settings = Settings(storage_root=str(tmp_path / "storage"), key_dir=str(tmp_path / "keys"))
        harness = (LocalHarness if request.param == "local" else SimulatedHarness)(settings, tmp_path)
    yield harness
    for backend in harness.backends:
        backend.close()


def poll_until(backend, done, timeout, ends=None):
    """Poll (waiting between polls as the engine does) until done(ends so far); every end, in order."""
    ends = [] if ends is None else ends
    deadline = time.monotonic() + timeout
    while True:
        ends += backend.poll()
        if done(ends):
            return ends
        assert time.monotonic() < deadline, "no end after %ss; ends so far: %s" % (timeout, ends)
        backend.wait(0.2)


def test_an_ended_attempt_is_reported_once_with_its_exit_code(harness):
    backend = harness.open()
    assert backend.poll() == []
    _, (done, failed) = harness.job(nap_or_fail, [0.1, -1])  # a backend serves one job
    backend.launch(done)
    backend.launch(failed)
    ends = poll_until(backend, lambda ends: len(ends) >= 2, harness.timeout)
    for _ in range(3):  # polls after the end report nothing again
        ends += backend.poll()
        backend.wait(0.2)
    by_attempt = {end.attempt: end for end in ends}
    assert sorted(end.attempt for end in ends) == sorted([done.attempt, failed.attempt])
    assert by_attempt[done.attempt].exit_code == 0
    assert by_attempt[failed.attempt].exit_code not in (0, None)  # the runner recorded the exception


def test_a_cancelled_attempt_is_never_reported(harness):
    backend = harness.open()
    _, (cancelled, witness) = harness.job(nap, [0.2, 2.0])
    backend.launch(cancelled)
    backend.launch(witness)
    backend.cancel(cancelled.attempt)
    backend.cancel(cancelled.attempt)  # again: nothing to do
    ends = poll_until(backend, lambda ends: ends, harness.timeout)  # the witness ran longer than the cancelled would
    backend.cancel(witness.attempt)  # ended already: nothing to do
    ends += backend.poll()
    assert [end.attempt for end in ends] == [witness.attempt]


def test_started_is_none_until_known_then_at_or_after_launch(harness):
    backend = harness.open()
    _, (spec,) = harness.job(nap, [LONG])
    launched = time.monotonic()
    backend.launch(spec)
    assert backend.started(spec.attempt, launched) in (None, launched)  # known from launch, or not yet
    deadline = time.monotonic() + harness.timeout
    while backend.started(spec.attempt, launched) is None:
        assert time.monotonic() < deadline, "the attempt was never seen running"
        assert backend.poll() == []
        backend.wait(0.2)
    assert backend.started(spec.attempt, launched) >= launched
    backend.cancel(spec.attempt)


def test_adopt_finds_nothing_for_a_new_job(harness):
    backend = harness.open()
    job, _ = harness.job(nap, [0.1])
    assert backend.adopt(job) == {}


def test_close_leaves_nothing_running(harness):
    backend = harness.open()
    job, specs = harness.job(nap, [LONG, LONG + 1])
    for spec in specs:
        backend.launch(spec)
    backend.wait(0.5)
    backend.poll()
    backend.close()
    harness.backends.remove(backend)
    wait_until(
        lambda: not harness.running(job, backend, specs), harness.timeout, "the closed backend's attempts to end"
    )
