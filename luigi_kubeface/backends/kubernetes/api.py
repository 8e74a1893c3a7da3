"""Talking to the Kubernetes API: the few calls the backend makes, each one request.

Errors are sorted once, in api_errors.py: transient ones are waited out with one Backoff, anything
else becomes a ConfigurationError or BackendError that names the cause and the fix. Connecting to the
cluster is api_client.py's.
"""

import json
import logging

from ...errors import BackendError, ConfigurationError
from .api_client import load_api_client
from .api_errors import START_DEADLINE, describe, retried

log = logging.getLogger(__name__)

_TIMEOUT = (5, 15)  # (connect, read) seconds for ordinary calls: a stalled connection must not hang the master
# What a master does in its namespace (docs/kubernetes-rbac.yaml grants exactly this).
NEEDED_VERBS = (
    [("pods", verb) for verb in ("create", "get", "list", "watch", "delete")]
    + [("pods/log", "get")]
    + [("secrets", verb) for verb in ("create", "update", "delete")]
)
# With namespace_max_pods, each master keeps a Lease saying what it wants (namespace_share.py).
SHARE_VERBS = [("coordination.k8s.io:leases", verb) for verb in ("create", "get", "list", "patch", "delete")]
# The server ends each watch after this; a stream silent for WATCH_SECONDS + _WATCH_SLACK is a stalled
# connection (a NAT or load balancer dropped it without a word): the client gives up on it and resumes.
WATCH_SECONDS = 30
_WATCH_SLACK = 5
CANCEL_GRACE = 5  # seconds a cancelled pod gets to stop before it is killed


def _drained(response):
    """Read a response the caller has no use for: only a response read to its end gives its connection back to the
    pool. Unread, every create and delete of a pod opened a TLS connection of its own (a handshake each, on both
    sides: half the master's CPU at 300 pods)."""
    return response.data


class KubeApi:
    """The calls the backend makes, each one request, each raising the client's own errors."""

    def __init__(self, settings, api_client=None):
        from kubernetes import client

        self.settings = settings
        self.namespace = settings.namespace
        self.client = api_client or load_api_client(settings)
        self.core = client.CoreV1Api(self.client)

    def check_namespace(self, deadline=START_DEADLINE):
        """Fail before launch when the namespace is missing; wait out an API server that is down."""
        from kubernetes.client.rest import ApiException

        try:
            retried(
                lambda: _drained(
                    self.core.read_namespace(self.namespace, _preload_content=False, _request_timeout=_TIMEOUT)
                ),
                deadline,
            )
        except ApiException as error:
            if error.status == 404:
                raise ConfigurationError(
                    "namespace %r does not exist in the cluster: create it (kubectl create namespace %s) "
                    "or set [kubeface] namespace" % (self.namespace, self.namespace)
                ) from None
            if error.status == 403:
                return  # may not read namespaces; creating pods will tell
            raise BackendError("cannot reach the Kubernetes API server: %s" % describe(error)) from None
        except Exception as error:  # noqa: BLE001 - transport errors
            raise BackendError(
                "cannot reach the Kubernetes API server at %s: %s" % (self.client.configuration.host, describe(error))
            ) from None

    def check_permissions(self):
        """Fail before launch when the master may not do what a job needs: one access review per verb.

        Without watch the master hangs after the work is done; without delete finished pods hold the
        cap; without list it waits for a list that never comes. An access review that cannot be made
        (an old or unusual API server) is skipped: the calls themselves will tell.
        """
        from kubernetes import client

        auth = client.AuthorizationV1Api(self.client)
        missing = []
        for resource, verb in NEEDED_VERBS + (SHARE_VERBS if self.settings.namespace_max_pods else []):
            group, _, resource = resource.rpartition(":")
            resource, _, subresource = resource.partition("/")
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": self.namespace,
                        "verb": verb,
                        "resource": resource,
                        "subresource": subresource,
                        "group": group,
                    }
                },
            }
            try:
                response = auth.create_self_subject_access_review(
                    body, _preload_content=False, _request_timeout=_TIMEOUT
                )
            except Exception as error:  # noqa: BLE001 - see the docstring
                log.info("could not check the master's permissions (%s); going on", describe(error))
                return
            if not (json.loads(response.data).get("status") or {}).get("allowed"):
                missing.append("%s %s" % (verb, "/".join(filter(None, (resource, subresource)))))
        if missing:
            raise ConfigurationError(
                "the master may not %s in namespace %r: bind it a Role that allows them (docs/kubernetes-rbac.yaml "
                "is the least one: kubectl apply -n %s -f docs/kubernetes-rbac.yaml)"
                % (", ".join(missing), self.namespace, self.namespace)
            )

    def create_pod(self, body):
        _drained(
            self.core.create_namespaced_pod(self.namespace, body, _preload_content=False, _request_timeout=_TIMEOUT)
        )

    def delete_pod(self, name, grace_seconds=None):
        """Delete a pod; a pod that is already gone counts as deleted."""
        from kubernetes.client.rest import ApiException

        try:
            _drained(
                self.core.delete_namespaced_pod(
                    name,
                    self.namespace,
                    grace_period_seconds=grace_seconds,
                    _preload_content=False,
                    _request_timeout=_TIMEOUT,
                )
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def pod_log_tail(self, name, lines=40):
        """The pod's last lines of output, or "" when the node no longer has them."""
        try:
            response = self.core.read_namespaced_pod_log(
                name,
                self.namespace,
                tail_lines=lines,
                limit_bytes=8192,
                _preload_content=False,
                _request_timeout=_TIMEOUT,
            )
            return response.data.decode(errors="replace")
        except Exception:  # noqa: BLE001 - logs are a courtesy: the attempt's log is in storage
            return ""

    def follow_pod_log(self, name, out):
        """Copy a pod's log to out as it is written, until the pod ends."""
        response = self.core.read_namespaced_pod_log(name, self.namespace, follow=True, _preload_content=False)
        try:
            for chunk in response.stream(4096):
                out.write(chunk.decode(errors="replace"))
                out.flush()
        finally:
            response.release_conn()

    def apply_secret(self, body):
        """Create the job's Secret, or replace it when an earlier master left one."""
        from kubernetes.client.rest import ApiException

        try:
            _drained(
                self.core.create_namespaced_secret(
                    self.namespace, body, _preload_content=False, _request_timeout=_TIMEOUT
                )
            )
        except ApiException as error:
            if error.status != 409:
                raise
            _drained(
                self.core.replace_namespaced_secret(
                    body["metadata"]["name"], self.namespace, body, _preload_content=False, _request_timeout=_TIMEOUT
                )
            )

    def delete_secret(self, name):
        from kubernetes.client.rest import ApiException

        try:
            _drained(
                self.core.delete_namespaced_secret(
                    name, self.namespace, _preload_content=False, _request_timeout=_TIMEOUT
                )
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def list_pods(self, selector):
        """(pods by name, resourceVersion) in one request."""
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, _preload_content=False, _request_timeout=(5, 120)
        )
        data = json.loads(response.data)
        return {p["metadata"]["name"]: p for p in data.get("items") or []}, data["metadata"]["resourceVersion"]

    # -- the Leases by which masters share namespace_max_pods (namespace_share.py) ---------------------

    def _leases(self):
        from kubernetes import client

        return client.CoordinationV1Api(self.client)

    def list_leases(self, selector):
        response = self._leases().list_namespaced_lease(
            self.namespace, label_selector=selector, _preload_content=False, _request_timeout=_TIMEOUT
        )
        return json.loads(response.data).get("items") or []

    def create_lease(self, body):
        _drained(
            self._leases().create_namespaced_lease(
                self.namespace, body, _preload_content=False, _request_timeout=_TIMEOUT
            )
        )

    def patch_lease(self, name, body):
        """A merge patch of this master's Lease; False if it is gone (deleted by someone: create it again)."""
        from kubernetes.client.rest import ApiException

        try:
            _drained(
                self._leases().patch_namespaced_lease(
                    name, self.namespace, body, _preload_content=False, _request_timeout=_TIMEOUT
                )
            )
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    def delete_lease(self, name):
        _drained(
            self._leases().delete_namespaced_lease(
                name, self.namespace, _preload_content=False, _request_timeout=_TIMEOUT
            )
        )

    def watch_pods(self, selector, resource_version):
        """A watch response: the server ends it after WATCH_SECONDS; read it with watch_events."""
        return self.core.list_namespaced_pod(
            self.namespace,
            label_selector=selector,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=(5, WATCH_SECONDS + _WATCH_SLACK),
        )
