"""The one retry policy at the Kubernetes API boundary (api_errors.Backoff, api_errors.retried), without a cluster."""

import pytest
from kubernetes.client.rest import ApiException

from luigi_kubeface.backends.kubernetes.api_errors import Backoff, retried


def failing(errors, result="done"):
    """A call that raises each of errors in turn, then returns result."""
    errors = list(errors)

    def call():
        if errors:
            raise errors.pop(0)
        return result

    return call


def test_transient_errors_are_waited_out_with_doubling_waits_up_to_the_ceiling():
    waits = []
    errors = [ApiException(status=503)] * 3 + [ConnectionRefusedError()] * 5
    assert retried(failing(errors), deadline=None, sleep=waits.append) == "done"
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_an_error_that_is_not_transient_is_raised_at_once():
    waits = []
    with pytest.raises(ApiException) as raised:
        retried(failing([ApiException(status=503), ApiException(status=404)]), sleep=waits.append)
    assert raised.value.status == 404 and waits == [0.5]


def test_the_deadline_ends_the_waiting_with_the_last_error():
    backoff = Backoff(deadline=0)
    assert not backoff.expired()  # nothing failed yet
    backoff.failed()
    with pytest.raises(ApiException):
        retried(failing([ApiException(status=500)] * 100), deadline=0, sleep=lambda seconds: None)


def test_a_success_ends_the_outage_and_restarts_the_waits():
    backoff = Backoff()
    assert backoff.succeeded() is None  # no outage
    assert [backoff.failed() for _ in range(3)] == [0.5, 1.0, 2.0]
    assert backoff.since is not None and backoff.succeeded() >= 0
    assert backoff.since is None and backoff.failed() == 0.5
