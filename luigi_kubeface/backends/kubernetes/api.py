"""Talking to the Kubernetes API: configuration, the few calls the backend makes, and the one retry policy.

Errors are sorted once, here: transient ones (5xx, 429, timeouts, connection refused, `403 ...
exceeded quota`) are waited out with one Backoff (Metaflow's k8s_retry idea: one policy at the API
boundary, not a loop per call); anything else becomes a ConfigurationError or BackendError that
names the cause and the fix.
"""

import json
import logging
import re
import time

from ...errors import BackendError, ConfigurationError

log = logging.getLogger(__name__)

_TIMEOUT = (5, 15)  # (connect, read) seconds for ordinary calls: a stalled connection must not hang the master
# What a master does in its namespace (docs/kubernetes-rbac.yaml grants exactly this).
NEEDED_VERBS = ([("pods", verb) for verb in ("create", "get", "list", "watch", "delete")] + [("pods/log", "get")]
                + [("secrets", verb) for verb in ("create", "update", "delete")])
# With namespace_max_pods, each master keeps a Lease saying what it wants (namespace_share.py).
SHARE_VERBS = [("coordination.k8s.io:leases", verb) for verb in ("create", "get", "list", "patch", "delete")]
# The server ends each watch after this; a stream silent for WATCH_SECONDS + _WATCH_SLACK is a stalled
# connection (a NAT or load balancer dropped it without a word): the client gives up on it and resumes.
WATCH_SECONDS = 30
_WATCH_SLACK = 5
CANCEL_GRACE = 5  # seconds a cancelled pod gets to stop before it is killed
START_DEADLINE = 60.0  # seconds a call made before any pod runs waits out an unreachable API server


class Backoff:
    """The one retry policy for the API server: wait 0.5s after a transient error, doubling up to 10s.

    Calls made before the job's pods exist (the namespace check, the job's Secret) give up after
    START_DEADLINE: a master that cannot reach its cluster says so. Calls made while pods run (creates,
    deletes, the watch) never give up: the pods go on meanwhile, and the master waits the outage out.
    since: monotonic time of the first failure of the current outage, None while calls succeed.
    """

    FIRST = 0.5
    CEILING = 10.0

    def __init__(self, deadline=None):
        self.deadline = deadline
        self.since = None
        self._delay = self.FIRST

    def failed(self):
        """Record a failed call; seconds to wait before the next one."""
        if self.since is None:
            self.since = time.monotonic()
        delay, self._delay = self._delay, min(self._delay * 2, self.CEILING)
        return delay

    def expired(self):
        return self.deadline is not None and self.since is not None and time.monotonic() - self.since > self.deadline

    def succeeded(self):
        """Record a call that went through; the seconds the outage lasted, or None if there was none."""
        lasted = None if self.since is None else time.monotonic() - self.since
        self.since, self._delay = None, self.FIRST
        return lasted


def retried(call, deadline=START_DEADLINE, sleep=time.sleep):
    """call() until it returns, waiting out transient errors with a Backoff; the last error once the deadline passed."""
    backoff = Backoff(deadline)
    while True:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - sorted by is_transient; the rest goes to the caller
            if not is_transient(error) or backoff.expired():
                raise
            sleep(backoff.failed())


def load_api_client(settings):
    """A client for the configured cluster: kubeconfig (with context) first, then in-cluster config."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=settings.kubeconfig or None, context=settings.kube_context or None,
                                client_configuration=configuration)
    except config.ConfigException as error:
        text = str(error)
        if settings.kube_context and "context" in text.lower():
            raise ConfigurationError(_unknown_context(settings)) from None
        if settings.kubeconfig:
            raise ConfigurationError("[kubeface] kubeconfig = %r cannot be used: %s" % (settings.kubeconfig, text)) from None
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            raise ConfigurationError(
                "no Kubernetes configuration found (no kubeconfig, and not running in a cluster): run "
                "`gcloud container clusters get-credentials CLUSTER`, or set [kubeface] kubeconfig") from None
    except FileNotFoundError:
        raise ConfigurationError("[kubeface] kubeconfig = %r does not exist: set the path of a kubeconfig file "
                                 "or leave it empty for ~/.kube/config" % settings.kubeconfig) from None
    configuration.retries = 0  # the backend waits and retries itself, with its own backoff
    return client.ApiClient(configuration)


def _unknown_context(settings):
    from kubernetes import config

    try:
        contexts, _ = config.list_kube_config_contexts(config_file=settings.kubeconfig or None)
        known = ", ".join(sorted(c["name"] for c in contexts)) or "none"
    except Exception:  # noqa: BLE001 - the list only improves the message
        known = "unknown"
    return ("[kubeface] kube_context = %r is not in the kubeconfig: known contexts are %s"
            % (settings.kube_context, known))


def is_transient(error):
    """Errors worth waiting out: the API server is busy, down, or the namespace quota is full for now."""
    import urllib3
    from kubernetes.client.rest import ApiException

    if isinstance(error, ApiException):
        if error.status in (0, 408, 429, 500, 502, 503, 504):
            return True
        return error.status == 403 and "exceeded quota" in str(error.body or "") and not quota_never_fits(error)
    return isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError))


_QUOTA = re.compile(r"exceeded quota: ([^,]+), requested: (.*?), used: (.*?), limited: ([^\"]*)")
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def _quantity(text):
    match = _QUANTITY.match(text.strip())
    if not match or match.group(2) not in _UNITS:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def _resource_list(text):
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {name.strip(): value.strip() for name, value in pairs}


def quota_never_fits(error):
    """For `403 exceeded quota` where one pod asks more than the quota's hard limit: why, in words; else "".

    A full quota frees up as pods end; a hard limit below one pod's request never admits it.
    """
    match = _QUOTA.search(str(getattr(error, "body", "") or ""))
    if not match:
        return ""
    quota, requested, limited = match.group(1), _resource_list(match.group(2)), _resource_list(match.group(4))
    for name, asked in requested.items():
        want, hard = _quantity(asked), _quantity(limited.get(name, ""))
        if want is not None and hard is not None and want > hard:
            return ("the ResourceQuota %r allows %s=%s in the namespace, less than one pod requests (%s): no pod can "
                    "ever be admitted. Lower the pod's request ([kubeface] cpu_request, memory_request, memory_limit) "
                    "or raise the quota" % (quota, name, limited[name], asked))
    return ""


def describe(error):
    """One line for an API error: status and the server's message, not the whole HTTP dump."""
    from kubernetes.client.rest import ApiException

    if isinstance(error, ApiException):
        try:
            message = json.loads(error.body).get("message", "")
        except (TypeError, ValueError, AttributeError):
            message = error.reason or ""
        return "%s %s" % (error.status, message)
    return "%s: %s" % (type(error).__name__, error)


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
            retried(lambda: _drained(self.core.read_namespace(self.namespace, _preload_content=False,
                                                              _request_timeout=_TIMEOUT)), deadline)
        except ApiException as error:
            if error.status == 404:
                raise ConfigurationError(
                    "namespace %r does not exist in the cluster: create it (kubectl create namespace %s) "
                    "or set [kubeface] namespace" % (self.namespace, self.namespace)) from None
            if error.status == 403:
                return  # may not read namespaces; creating pods will tell
            raise BackendError("cannot reach the Kubernetes API server: %s" % describe(error)) from None
        except Exception as error:  # noqa: BLE001 - transport errors
            raise BackendError("cannot reach the Kubernetes API server at %s: %s"
                               % (self.client.configuration.host, describe(error))) from None

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
            body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"namespace": self.namespace, "verb": verb, "resource": resource,
                                                    "subresource": subresource, "group": group}}}
            try:
                response = auth.create_self_subject_access_review(body, _preload_content=False,
                                                                  _request_timeout=_TIMEOUT)
            except Exception as error:  # noqa: BLE001 - see the docstring
                log.info("could not check the master's permissions (%s); going on", describe(error))
                return
            if not (json.loads(response.data).get("status") or {}).get("allowed"):
                missing.append("%s %s" % (verb, "/".join(filter(None, (resource, subresource)))))
        if missing:
            raise ConfigurationError(
                "the master may not %s in namespace %r: bind it a Role that allows them (docs/kubernetes-rbac.yaml "
                "is the least one: kubectl apply -n %s -f docs/kubernetes-rbac.yaml)"
                % (", ".join(missing), self.namespace, self.namespace))

    def create_pod(self, body):
        _drained(self.core.create_namespaced_pod(self.namespace, body, _preload_content=False,
                                                 _request_timeout=_TIMEOUT))

    def delete_pod(self, name, grace_seconds=None):
        """Delete a pod; a pod that is already gone counts as deleted."""
        from kubernetes.client.rest import ApiException

        try:
            _drained(self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=grace_seconds,
                                                     _preload_content=False, _request_timeout=_TIMEOUT))
        except ApiException as error:
            if error.status != 404:
                raise

    def pod_log_tail(self, name, lines=40):
        """The pod's last lines of output, or "" when the node no longer has them."""
        try:
            response = self.core.read_namespaced_pod_log(name, self.namespace, tail_lines=lines, limit_bytes=8192,
                                                         _preload_content=False, _request_timeout=_TIMEOUT)
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
            _drained(self.core.create_namespaced_secret(self.namespace, body, _preload_content=False,
                                                        _request_timeout=_TIMEOUT))
        except ApiException as error:
            if error.status != 409:
                raise
            _drained(self.core.replace_namespaced_secret(body["metadata"]["name"], self.namespace, body,
                                                         _preload_content=False, _request_timeout=_TIMEOUT))

    def delete_secret(self, name):
        from kubernetes.client.rest import ApiException

        try:
            _drained(self.core.delete_namespaced_secret(name, self.namespace, _preload_content=False,
                                                        _request_timeout=_TIMEOUT))
        except ApiException as error:
            if error.status != 404:
                raise

    def list_pods(self, selector):
        """(pods by name, resourceVersion) in one request."""
        response = self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                 _preload_content=False, _request_timeout=(5, 120))
        data = json.loads(response.data)
        return {p["metadata"]["name"]: p for p in data.get("items") or []}, data["metadata"]["resourceVersion"]

    # -- the Leases by which masters share namespace_max_pods (namespace_share.py) ---------------------

    def _leases(self):
        from kubernetes import client

        return client.CoordinationV1Api(self.client)

    def list_leases(self, selector):
        response = self._leases().list_namespaced_lease(self.namespace, label_selector=selector,
                                                        _preload_content=False, _request_timeout=_TIMEOUT)
        return json.loads(response.data).get("items") or []

    def create_lease(self, body):
        _drained(self._leases().create_namespaced_lease(self.namespace, body, _preload_content=False,
                                                        _request_timeout=_TIMEOUT))

    def patch_lease(self, name, body):
        """A merge patch of this master's Lease; False if it is gone (deleted by someone: create it again)."""
        from kubernetes.client.rest import ApiException

        try:
            _drained(self._leases().patch_namespaced_lease(name, self.namespace, body, _preload_content=False,
                                                           _request_timeout=_TIMEOUT))
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    def delete_lease(self, name):
        _drained(self._leases().delete_namespaced_lease(name, self.namespace, _preload_content=False,
                                                        _request_timeout=_TIMEOUT))

    def watch_pods(self, selector, resource_version):
        """A watch response: the server ends it after WATCH_SECONDS; read it with watch_events."""
        return self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, watch=True, resource_version=resource_version,
            allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS, _preload_content=False,
            _request_timeout=(5, WATCH_SECONDS + _WATCH_SLACK))
