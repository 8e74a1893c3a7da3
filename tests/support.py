"""What the tests share: where the repository is, the luigi command as a user runs it, hostile pickles.

The servers the tests start live in tests/infra/; the functions jobs map live in tests/elements.py.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(poll_interval=0.05, retry_backoff=0.1)  # a job's settings for tests: quick polls and retries
TESTS = os.path.dirname(os.path.abspath(__file__))


def read_text(path):
    """A file's text, the file closed again (an open left to the garbage collector is a ResourceWarning)."""
    with open(path) as f:
        return f.read()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def write_json(obj, path):
    """json.dump(obj) into path, the file closed again."""
    with open(path, "w") as f:
        json.dump(obj, f)


def kubeface(*argv):
    """The `kubeface` command run in this process: (exit code, what it printed)."""
    import io

    from luigi_kubeface.cli import main

    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def runners_of(root):
    """Pids of the task runners working on jobs under root, from /proc."""
    return [
        pid
        for pid, argv in process_argvs()
        if b"luigi_kubeface.runner" in argv and any(str(root).encode() in arg for arg in argv)
    ]


def process_argvs():
    """(pid, argv as bytes) of every process on this machine that can still be read."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                yield int(pid), f.read().split(b"\0")
        except OSError:
            continue


def run_luigi(args, cwd, env=None, timeout=600, python=None):
    """Run the real `luigi` command with the repository's luigi.cfg, as a user would (python: run it
    as `python -m luigi` with that interpreter instead, e.g. a virtualenv's).

    A command that runs over its timeout is stopped with SIGABRT first: faulthandler then prints where
    every thread of the command and of its forked Luigi workers stands, which is what finding a hang needs.
    """
    full_env = dict(
        os.environ,
        LUIGI_CONFIG_PATH=os.path.join(REPO, "luigi.cfg"),
        PYTHONFAULTHANDLER="1",
        PYTHONPATH=os.pathsep.join([TESTS, REPO, os.environ.get("PYTHONPATH", "")]),
    )
    full_env.update(env or {})
    luigi = os.path.join(os.path.dirname(sys.executable), "luigi")
    command = [python, "-m", "luigi"] if python else [luigi]
    process = subprocess.Popen(
        command + list(args),
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_no_core_dumps,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = _stop_with_tracebacks(process)
        raise AssertionError(
            "luigi %s ran over %ss; its last output, then where each process stood:\n%s"
            % (" ".join(args[:3]), timeout, (out + err)[-12000:])
        ) from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _no_core_dumps():
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the SIGABRT below is for tracebacks, not a core file


def _stop_with_tracebacks(process):
    """SIGABRT to the command's whole process group (PYTHONFAULTHANDLER prints each one's threads), then SIGKILL."""
    import signal

    for sig, wait in ((signal.SIGABRT, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return process.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return "", "(no output: the command did not end after SIGKILL)"


def run_runner(job_url, element, attempt, key, cwd):
    """The real task runner, `python -m luigi_kubeface.runner`, with the key in a pipe as the local backend
    hands it (never in argv or the environment)."""
    from luigi_kubeface.runner import process as runner
    from luigi_kubeface.bucket import blobs as serialization

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(json.dumps({serialization.KEY_ENV: key.hex()}).encode())
    try:
        env = dict(os.environ, TMPDIR=str(cwd), **{serialization.SECRET_FD_ENV: str(read_end)})
        env.pop(serialization.KEY_ENV, None)
        return subprocess.run(
            runner.command(job_url, element, attempt, python=sys.executable),
            env=env,
            pass_fds=(read_end,),
            cwd=str(cwd),
            capture_output=True,
            timeout=120,
        )
    finally:
        os.close(read_end)


class Bomb:
    """Unpickling this creates a file: a stand-in for code a bucket writer would like to run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def dumps_blob(obj, kind, extra=None, key=None):
    """obj pickled into a blob's envelope, as the master and the runner write one (their streamed writers)."""
    import cloudpickle

    from luigi_kubeface.bucket import blobs

    return blobs.envelope(cloudpickle.dumps(obj), kind, extra, key)


def loads_blob(blob, where="blob", key=None, expect=None):
    """The object in a blob, its envelope checked as the master and the runner check one."""
    from luigi_kubeface.bucket import blobs

    return blobs.loads_with_header(blob, where, key, expect)[1]


def element_from_result_key(key):
    """The element of a result name found in a listing (None for anything else)."""
    from luigi_kubeface.bucket import layout

    found = layout.result_from_key(key)
    return found[0] if found else None
