"""The real node's pod network: one Linux bridge, and pods that reach its gateway address and nothing else.

Nothing leaves the machine: the CNI bridge plugin gets ``isGateway: false`` and ``ipMasq: false`` (IP
forwarding stays off), no routes (no default route in pods), and the pods' DNS points at loopback.
Servers the pods use (the storage emulator) listen on ``gateway``, which the machine itself reaches
too. The bridge is made before the kubelet starts: the kubelet refuses a loopback node IP, so the
node's IP is the gateway.
"""

import ipaddress
import json
import os
import subprocess
from pathlib import Path

DEFAULT_BRIDGE = "kubeface0"
DEFAULT_SUBNET = "10.244.0.0/24"
SUBNETS = 64  # kubeface<N> on 10.244.<N>.0/24: each test session takes one of its own


class PodNetwork:
    def __init__(self, bridge=DEFAULT_BRIDGE, subnet=DEFAULT_SUBNET):
        self.bridge = bridge
        self.subnet = ipaddress.ip_network(subnet)
        self.gateway = str(self.subnet.network_address + 1)

    @classmethod
    def allocate(cls):
        """A bridge of this session's own: test sessions that run at once never share (nor delete) one."""
        for n in range(SUBNETS):
            network = cls("kubeface%d" % n, "10.244.%d.0/24" % n)
            if network.exists():
                continue
            try:
                _ip("link", "add", network.bridge, "type", "bridge")  # atomic: one session wins a name
            except RuntimeError:
                continue
            from .controlplane import Reaper  # the bridge goes with this process, however it ends

            Reaper.on_death("bridge:" + network.bridge, ["ip", "link", "delete", network.bridge])
            return network.up()
        raise RuntimeError(
            "no free pod network among kubeface0..%d: remove stale bridges (ip link delete ...)" % (SUBNETS - 1)
        )

    def exists(self):
        return Path("/sys/class/net", self.bridge).exists()

    def up(self):
        """Create the bridge with the gateway address (idempotent)."""
        if os.geteuid() != 0:
            raise PermissionError("the real node's pod network needs root (a bridge and its address)")
        if not self.exists():
            _ip("link", "add", self.bridge, "type", "bridge")
        addresses = subprocess.run(
            ["ip", "-o", "-4", "addr", "show", "dev", self.bridge], capture_output=True, text=True
        ).stdout
        if " %s/" % self.gateway not in addresses:
            _ip("addr", "add", "%s/%d" % (self.gateway, self.subnet.prefixlen), "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def down(self):
        if self.exists():
            subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)
        from .controlplane import Reaper

        Reaper.cancel("bridge:" + self.bridge)

    def write_cni_config(self, conf_dir, data_dir):
        """The CNI conflist containerd gives every pod sandbox."""
        conf = {
            "cniVersion": "1.0.0",
            "name": "kubeface",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": False,
                    "isDefaultGateway": False,
                    "ipMasq": False,
                    "hairpinMode": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [
                            [
                                {
                                    "subnet": str(self.subnet),
                                    "rangeStart": str(self.subnet.network_address + 10),
                                    "gateway": self.gateway,
                                }
                            ]
                        ],
                        "routes": [],
                        "dataDir": str(data_dir),
                    },
                }
            ],
        }
        Path(conf_dir).mkdir(parents=True, exist_ok=True)
        (Path(conf_dir) / "10-kubeface.conflist").write_text(json.dumps(conf, indent=2))


def _ip(*args):
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError("ip %s failed: %s" % (" ".join(args), done.stderr.strip()))
