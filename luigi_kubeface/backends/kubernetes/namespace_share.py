"""One cap across every job in a namespace ([kubeface] namespace_max_pods), shared fairly among the masters.

The seed's limit of about 400 pods is the cluster's, not one job's: several map tasks under
`luigi --workers 4`, or several users' masters, must share it. Each master says what it wants in a
Lease of its own (coordination.k8s.io, renewed while it runs, deleted when it closes), counts the
namespace's pods of the managed-by label from the API server, and creates a pod only while both its fair
share and the namespace have room. Shares are water-filled over what each master wants: one that wants
less than an equal share leaves the rest to the others, and a job that starts later gets its share as
the earlier job's pods end (the earlier one launches no more while it is over its share).

A master that vanished without deleting its Lease stops counting once its Lease has not changed for
LEASE_SECONDS, measured on this master's own clock (no trust in other machines' clocks). A master
takes no room until its Lease has been up for one refresh: two that start together would each have
counted only itself (the cap overshot by half), now each counts the other.
"""

import logging
import time

from .pod_spec import MANAGED_BY, MANAGER, RUN_LABEL

log = logging.getLogger(__name__)

LEASE_SECONDS = 30
DEMAND_LABEL = "kubeface.io/demand"  # on every master's Lease: the masters sharing the namespace
WANTS = "kubeface.io/wants"  # the annotation: pods the master would run now (in flight and queued)


def fair_shares(limit, wants):
    """Water-filling: {master: pods it may hold}. Each gets an equal part of limit, at most what it wants;
    what one leaves goes to the others. The last few pods go in name order, so every master computes the
    same shares from the same leases."""
    shares, left = dict.fromkeys(wants, 0), limit
    hungry = sorted(name for name in wants if wants[name] > 0)
    while hungry and left > 0:
        part = left // len(hungry)
        if part == 0:  # fewer pods left than masters that want them: one each, in name order
            for name in hungry[:left]:
                shares[name] += 1
            break
        for name in hungry:
            take = min(part, wants[name] - shares[name])
            shares[name] += take
            left -= take
        hungry = [name for name in hungry if shares[name] < wants[name]]
    return shares


def active(pod):
    """A pod that holds room: not yet Succeeded or Failed (what a ResourceQuota on pods counts)."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class NamespaceShare:
    """This master's room under namespace_max_pods, from its Lease, the others' and the namespace's pods."""

    def __init__(self, api, limit, identity, refresh_seconds=1.0, clock=time.monotonic):
        self.api, self.limit, self.identity = api, limit, identity
        self.name = "kubeface-demand-" + identity
        self.refresh_seconds, self.clock = refresh_seconds, clock
        self._room, self._refreshed = 0, None
        self._seen = {}  # lease name -> (its resourceVersion, when this master first saw that version)
        self._created = False

    def take(self, wants):
        """Whether this master may create one more pod now (wants: the pods it would run)."""
        now = self.clock()
        if self._refreshed is None or now - self._refreshed >= self.refresh_seconds:
            self._refresh(wants, now)
        if self._room <= 0:
            return False
        self._room -= 1
        return True

    def _refresh(self, wants, now):
        announced = self._created
        self._refreshed = now
        self._renew(wants)
        if not announced:  # the first round only publishes this master's Lease: two masters starting
            self._room = 0  # together each see the other's at their next round, before either takes room
            return
        masters = self._masters(now)
        masters[self.identity] = wants
        pods, _ = self.api.list_pods("%s=%s" % (MANAGED_BY, MANAGER))
        holding = [p for p in pods.values() if active(p)]
        mine = sum(1 for p in holding if (p["metadata"].get("labels") or {}).get(RUN_LABEL) == self.identity)
        share = fair_shares(self.limit, masters)[self.identity]
        self._room = max(0, min(share - mine, self.limit - len(holding)))

    def _masters(self, now):
        """{identity: pods wanted} of the other masters whose Lease changed within LEASE_SECONDS."""
        masters = {}
        for lease in self.api.list_leases("%s=true" % DEMAND_LABEL):
            meta = lease["metadata"]
            holder = (lease.get("spec") or {}).get("holderIdentity") or meta["name"]
            version, since = self._seen.get(meta["name"], (None, now))
            if version != meta.get("resourceVersion"):
                since = now
            self._seen[meta["name"]] = (meta.get("resourceVersion"), since)
            if holder == self.identity or now - since > LEASE_SECONDS:
                continue
            try:
                masters[holder] = max(0, int((meta.get("annotations") or {}).get(WANTS, "0")))
            except ValueError:
                continue  # not a lease a master of ours wrote
        return masters

    def _renew(self, wants):
        body = {
            "metadata": {"annotations": {WANTS: str(wants)}},
            "spec": {
                "renewTime": _micro_time(),
                "holderIdentity": self.identity,
                "leaseDurationSeconds": LEASE_SECONDS,
            },
        }
        if self._created and self.api.patch_lease(self.name, body):
            return
        body["metadata"].update(name=self.name, labels={MANAGED_BY: MANAGER, DEMAND_LABEL: "true"})
        body.update(apiVersion="coordination.k8s.io/v1", kind="Lease")
        self.api.create_lease(body)
        self._created = True

    def close(self):
        """Leave the namespace to the others at once (best effort: a Lease left behind expires)."""
        if self._created:
            try:
                self.api.delete_lease(self.name)
            except Exception as error:  # noqa: BLE001 - it expires after LEASE_SECONDS anyway
                log.info("could not delete Lease %s: %s", self.name, error)


def _micro_time():
    """Kubernetes' MicroTime: RFC 3339 with microseconds, in UTC."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06dZ" % int((now % 1) * 1e6)
