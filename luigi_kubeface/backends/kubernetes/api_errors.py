"""The API server's errors sorted once: transient ones waited out with the one Backoff, the rest put in words.

Transient: 5xx, 429, timeouts, connection refused, `403 ... exceeded quota` (Metaflow's k8s_retry idea:
one policy at the API boundary, not a loop per call). A quota that can never admit one pod is not transient.
"""

import json
import re
import time

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
_UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


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
            return (
                "the ResourceQuota %r allows %s=%s in the namespace, less than one pod requests (%s): no pod can "
                "ever be admitted. Lower the pod's request ([kubeface] cpu_request, memory_request, memory_limit) "
                "or raise the quota" % (quota, name, limited[name], asked)
            )
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
