"""Shared by the benchmark scripts: run `luigi` as a user would, time it, and read its peak memory."""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)  # this checkout's luigi_kubeface, not an installed one
sys.path.insert(1, os.path.join(REPO, "tests"))

from infra.servers import Luigid as TestLuigid  # noqa: E402 - the servers the tests start, started the same way


def scratch(prefix):
    """A scratch directory in memory when the machine has one: the benchmarks measure the master, not the disk."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def luigi_env(extra=None):
    env = dict(
        os.environ,
        LUIGI_CONFIG_PATH=os.path.join(REPO, "luigi.cfg"),
        PYTHONPATH=os.pathsep.join([BENCH, REPO, os.environ.get("PYTHONPATH", "")]),
    )
    env.update(extra or {})
    return env


def run_luigi(args, cwd, env=None, timeout=1800):
    """Run `luigi args`; return (seconds, peak RSS of that process in MB, exit code, output tail)."""
    luigi = [os.path.join(os.path.dirname(sys.executable), "luigi")]
    if not os.path.exists(luigi[0]):  # a venv over the system's site-packages has no script of its own
        luigi = [sys.executable, "-m", "luigi"]
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            luigi + list(args), cwd=cwd, env=luigi_env(env), stdout=out, stderr=subprocess.STDOUT
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        tail = out.read().decode(errors="replace")[-3000:]
    return seconds, usage.ru_maxrss / 1024.0, process.returncode, tail


class Luigid(TestLuigid):
    """The tests' luigid (tests/support.py), started at once in a scratch directory."""

    def __init__(self):
        super().__init__(tempfile.mkdtemp(prefix="bench-luigid-"))
        self.start()

    def flags(self):
        return ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(self.port)]

    def api(self, method, data):
        query = urllib.parse.quote(json.dumps(data))
        with urllib.request.urlopen(
            "http://127.0.0.1:%d/api/%s?data=%s" % (self.port, method, query), timeout=120
        ) as r:
            return json.loads(r.read())["response"]

    def count(self, status, name):
        tasks = self.api("task_list", {"status": status, "upstream_status": "", "search": name})
        return sum(1 for t in tasks.values() if t.get("name") == name) if isinstance(tasks, dict) else tasks

    def stop(self):
        super().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def median(values):
    return statistics.median(values) if values else float("nan")


def table(header, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    sys.stdout.flush()
