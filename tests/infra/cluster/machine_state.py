"""What a real node changes on the machine, recorded before it starts and put back when it stops.

The kubelet sets sysctls (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops ...) and adds
iptables chains; the node adds a bridge, cgroups under a root of its own, mounts under its work
folder (containerd's snapshots, the kubelet's bind mount of its root dir, network namespaces).
``snapshot`` records the state before the node starts, in a JSON file; ``restore`` puts it back.

This file is also a script with no imports from the tests (``python machine_state.py restore FILE``):
the cluster's watchdog runs it when the test process dies, even by SIGKILL, so a crash leaves the
machine as it was found too.
"""

import json
import os
import shutil
import subprocess
import sys
import time

# Sysctls the kubelet sets at start-up (kubelet's setupKernelTunables), plus what a bridge could touch.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv6.conf.all.forwarding",
)
CGROUP_ROOT = "/sys/fs/cgroup"
# Folders the kubelet, containerd and CNI make at fixed places whatever their settings say (device
# plugins, /var/log/containers links, shim sockets, the CNI cache): removed if the node made them.
FIXED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/lib/cni",
    "/run/nri",
    "/var/run/netns",
    "/etc/cni",
    "/var/lib/containers",
    "/run/containers",
)


def _sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def read_sysctls():
    values = {}
    for name in SYSCTLS:
        try:
            with open(_sysctl_path(name)) as f:
                values[name] = f.read().strip()
        except OSError:
            pass
    return values


def restore_sysctls(values):
    """Write back every recorded value that changed; returns the names restored."""
    restored = []
    for name, value in values.items():
        try:
            with open(_sysctl_path(name)) as f:
                if f.read().strip() == value:
                    continue
            with open(_sysctl_path(name), "w") as f:
                f.write(value)
            restored.append(name)
        except OSError:
            pass
    return restored


def _command(argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def save_firewall():
    """The whole nftables ruleset (iptables-nft writes there), or the legacy iptables dumps."""
    ruleset = _command(["nft", "-s", "list", "ruleset"])  # stateless: counters change by the second
    if ruleset is not None:
        return {"nft": ruleset}
    return {"iptables": _command(["iptables-save"]) or "", "ip6tables": _command(["ip6tables-save"]) or ""}


def restore_firewall(saved):
    if "nft" in saved:
        if _command(["nft", "-s", "list", "ruleset"]) != saved["nft"]:
            subprocess.run(["nft", "flush", "ruleset"], capture_output=True)
            if saved["nft"].strip():
                subprocess.run(["nft", "-f", "-"], input=saved["nft"], text=True, capture_output=True)
        return
    for tool, dump in (("iptables", saved.get("iptables", "")), ("ip6tables", saved.get("ip6tables", ""))):
        now = _command([tool + "-save"]) or ""
        for table in {line[1:].strip() for line in now.splitlines() if line.startswith("*")}:
            subprocess.run([tool, "-t", table, "-F"], capture_output=True)
            subprocess.run([tool, "-t", table, "-X"], capture_output=True)
        if dump.strip():
            subprocess.run([tool + "-restore"], input=dump, text=True, capture_output=True)


def mounts_under(folder):
    """Mount points at or under folder, deepest first (from /proc/self/mountinfo)."""
    folder = os.path.realpath(folder)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == folder or point.startswith(folder + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_under(folder):
    for _ in range(3):  # a mount can hide another at the same point
        points = mounts_under(folder)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True)


def cgroup_dirs(name):
    """The node's cgroup root in every v1 hierarchy (and the unified one) that has it."""
    found = []
    for hierarchy in sorted(os.listdir(CGROUP_ROOT)) if os.path.isdir(CGROUP_ROOT) else []:
        path = os.path.join(CGROUP_ROOT, hierarchy, name.strip("/"))
        if os.path.isdir(path):
            found.append(path)
    return found


def remove_cgroups(name):
    """Kill what is left in the node's cgroups, then remove them, deepest first."""
    for top in cgroup_dirs(name):
        for _ in range(20):
            dirs = [d for d, _, _ in os.walk(top)]
            for d in sorted(dirs, key=lambda p: -p.count("/")):
                try:
                    with open(os.path.join(d, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            try:
                                os.kill(int(pid), 9)
                            except OSError:
                                pass
                except OSError:
                    pass
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            if not os.path.isdir(top):
                break
            time.sleep(0.1)


def kill_processes_of(binaries, marker):
    """Processes running one of these executables with marker (the node's folder) in their command line:
    containerd's shims outlive containerd by design; another node's shims are left alone."""
    targets = {os.path.realpath(b) for b in binaries}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                exe = os.path.realpath("/proc/%s/exe" % name)
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    cmdline = f.read().decode(errors="replace")
            except OSError:
                continue
            if exe in targets and marker in cmdline:
                try:
                    os.kill(int(name), 9)
                except OSError:
                    pass


def snapshot(path, **node):
    """Record the machine's state before a node starts, and what the node will own (node: JSON values)."""
    state = {
        "sysctls": read_sysctls(),
        "firewall": save_firewall(),
        "made": [p for p in FIXED_PATHS if not os.path.lexists(p)],
        **node,
    }
    with open(path, "w") as f:
        json.dump(state, f)
    return state


def restore(path):
    """Undo what the node changed: processes, mounts, cgroups, bridge, firewall, sysctls. Safe to repeat."""
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return
    for folder in state.get("folders", []):
        kill_processes_of(state.get("binaries", []), folder)
    for folder in state.get("folders", []):
        unmount_under(folder)
    if state.get("cgroup"):
        remove_cgroups(state["cgroup"])
    for link in state.get("links", []):
        subprocess.run(["ip", "link", "delete", link], capture_output=True)
    restore_firewall(state.get("firewall", {}))
    restore_sysctls(state.get("sysctls", {}))
    for folder in state.get("made", []) + state.get("remove", []):
        if not mounts_under(folder):
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "restore":
        restore(sys.argv[2])
    else:
        sys.exit("usage: machine_state.py restore STATE_FILE")
