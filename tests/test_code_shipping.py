"""The user's code travels with the job, and a result is reused only for the code that made it.

The pipelines here live in a temporary folder, outside the repository and the tests' path, as a
user's would; the local backend's runners see only installed packages, so they import the pipeline
only because the job shipped it.
"""

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

from luigi_kubeface import Client
from luigi_kubeface.job.code import discover as code_discover, install as code_install
from luigi_kubeface.errors import ConfigurationError, EnvironmentMismatchError, JobFailedError
from support import FAST, run_luigi, read_json, read_text


PIPELINE = """
import luigi
from luigi_kubeface import KubefaceMapTask
from grid_helpers.scoring import score


class Grid(KubefaceMapTask):
    n = luigi.IntParameter(default=6)
    pinned = luigi.Parameter(default="", significant=False)

    def grid(self):
        return [dict(i=i) for i in range(self.n)]

    def run_element(self, i):
        return score(i)

    def code_version(self):
        return self.pinned or None


class Total(luigi.Task):
    n = luigi.IntParameter(default=6)
    pinned = luigi.Parameter(default="", significant=False)

    def requires(self):
        return Grid(n=self.n, pinned=self.pinned)

    def output(self):
        return luigi.LocalTarget("total-%d.txt" % self.n)

    def run(self):
        with self.output().open("w") as f:
            f.write(str(sum(self.input().load())))
"""


def write_pipeline(folder, offset):
    """A pipeline module and a helper package with a relative import, as a user's project has them."""
    os.makedirs(os.path.join(folder, "grid_helpers"), exist_ok=True)
    with open(os.path.join(folder, "grid_pipeline.py"), "w") as f:
        f.write(PIPELINE)
    with open(os.path.join(folder, "grid_helpers", "__init__.py"), "w") as f:
        f.write("")
    with open(os.path.join(folder, "grid_helpers", "scoring.py"), "w") as f:
        f.write("from .constants import OFFSET\n\ndef score(i):\n    return i * 10 + OFFSET\n")
    with open(os.path.join(folder, "grid_helpers", "constants.py"), "w") as f:
        f.write("OFFSET = %d\n" % offset)


def luigi_in(folder, storage, *args):
    flags = [
        "--local-scheduler",
        "--workers",
        "2",
        "--kubeface-storage-root",
        storage,
        "--kubeface-key-dir",
        os.path.join(folder, "keys"),
        "--kubeface-poll-interval",
        "0.05",
    ]
    return run_luigi(
        ["--module", "grid_pipeline", "Total"] + flags + list(args), cwd=folder, env={"PYTHONPATH": folder}
    )  # the tests' folders are not on this path


def runs(storage):
    return len(glob.glob(os.path.join(storage, "*Grid*", "attempts", "*", "*.json")))


def total(folder):
    with open(os.path.join(folder, "total-6.txt")) as f:
        return int(f.read())


@pytest.mark.slow
def test_a_pipeline_of_its_own_folder_ships_and_an_edit_recomputes(tmp_path):
    folder, storage = str(tmp_path / "project"), str(tmp_path / "storage")
    write_pipeline(folder, offset=0)
    first = luigi_in(folder, storage)
    assert first.returncode == 0, first.stderr[-3000:]
    assert total(folder) == sum(i * 10 for i in range(6)) and runs(storage) == 6
    (job_dir,) = glob.glob(os.path.join(storage, "*Grid*"))
    meta = read_json(os.path.join(job_dir, "job.json"))
    assert {"grid_pipeline", "grid_helpers", "grid_helpers.scoring", "grid_helpers.constants"} <= set(
        meta["code"]["modules"]
    )
    assert "luigi" in meta["code"]["requirements"] and not any(
        m.startswith("luigi_kubeface") for m in meta["code"]["modules"]
    )

    # An edit of a helper two imports away: every element runs again, with the new code.
    write_pipeline(folder, offset=1000)
    os.unlink(os.path.join(folder, "total-6.txt"))
    second = luigi_in(folder, storage)
    assert second.returncode == 0, second.stderr[-3000:]
    assert total(folder) == sum(i * 10 + 1000 for i in range(6)) and runs(storage) == 12
    assert "6 of them have results of other code" in second.stderr
    results = glob.glob(os.path.join(job_dir, "results", "*.pkl"))
    assert len(results) == 6  # the results of the old code were replaced, not kept beside

    # A version pinned by hand: an edit that keeps it recomputes nothing, a new pin recomputes all.
    os.unlink(os.path.join(folder, "total-6.txt"))
    assert luigi_in(folder, storage, "--Total-pinned", "v1").returncode == 0 and runs(storage) == 18
    write_pipeline(folder, offset=5)
    os.unlink(os.path.join(folder, "total-6.txt"))
    assert luigi_in(folder, storage, "--Total-pinned", "v1").returncode == 0
    assert runs(storage) == 18 and total(folder) == sum(i * 10 + 1000 for i in range(6))

    # Luigi's own semantics, on request: any result counts.
    os.unlink(os.path.join(folder, "total-6.txt"))
    kept = luigi_in(folder, storage, "--kubeface-reuse-results", "any")
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert runs(storage) == 18 and total(folder) == sum(i * 10 + 1000 for i in range(6))

    status = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli", "status", job_dir], capture_output=True, text=True, timeout=120
    )
    assert "results by code version" in status.stdout, status.stdout


def test_client_map_identity_covers_the_function_code_and_shared_inputs(tmp_path, make_client):
    client = make_client(key_dir=str(tmp_path / "keys"))
    assert list(client.map(lambda x: x * 2, [1, 2, 3])) == [2, 4, 6]
    assert list(client.map(lambda x: x + 100, [1, 2, 3])) == [101, 102, 103]

    def scaled(x, data):
        return x * data

    assert list(client.map(scaled, [1, 2], shared={"data": 10})) == [10, 20]
    assert list(client.map(scaled, [1, 2], shared={"data": 1000})) == [1000, 2000]
    # The same job id with other code: recomputed; with the version pinned: reused.
    assert list(client.map(lambda x: x - 1, [5], job_id="pinned", code_version="1")) == [4]
    assert list(client.map(lambda x: x + 1, [5], job_id="pinned", code_version="1")) == [4]
    assert list(client.map(lambda x: x + 1, [5], job_id="pinned")) == [6]


def test_code_versions_are_the_same_in_every_process():
    """A digest of the bytecode, never of a pickle: sets in globals must not change it."""
    script = textwrap.dedent("""
        from luigi_kubeface.job.code import discover as code_discover, version as code_versions
        WORDS = {"alpha", "beta", "gamma", "delta"}
        def helper(x):
            return x in WORDS
        f = lambda x: helper(x) or len(WORDS)
        print(code_versions.code_version(f, code_discover.build([])))
    """)
    versions = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONHASHSEED=str(seed)),
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(versions) == 1
    changed = script.replace("len(WORDS)", "len(WORDS) + 1")
    assert (
        subprocess.run([sys.executable, "-c", changed], capture_output=True, text=True, check=True).stdout
        not in versions
    )


def make_project(folder, files):
    for name, text in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w" if isinstance(text, str) else "wb") as f:
            f.write(text)


def fresh_import(folder, name, monkeypatch):
    monkeypatch.syspath_prepend(folder)
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]
    __import__(name)
    return sys.modules[name]


def test_what_ships_and_what_the_image_must_have(tmp_path, monkeypatch):
    folder = str(tmp_path / "proj")
    make_project(
        folder,
        {
            "shipme/__init__.py": "",
            "shipme/main.py": "import json\nimport luigi\nfrom . import sub\n\ndef f():\n    from shipme.lazy import g\n"
            "    return g()\n",
            "shipme/sub.py": "X = 1\n",
            "shipme/lazy.py": "def g():\n    return 2\n",
            "shipme/data.csv": "a,b\n",
            ".git/config": "[core]\n",
        },
    )
    fresh_import(folder, "shipme.main", monkeypatch)
    package = code_discover.build(["shipme.main"])
    assert sorted(package.files) == ["shipme/__init__.py", "shipme/lazy.py", "shipme/main.py", "shipme/sub.py"]
    assert "luigi" in package.requirements and "json" not in str(package.requirements)
    # Data ships when named; a folder never takes its .git along.
    with_data = code_discover.build(["shipme.main"], include=[os.path.join(folder, "shipme")])
    assert "shipme/data.csv" in with_data.files and not any(".git" in p for p in with_data.files)
    assert with_data.digest != package.digest
    assert code_discover.build(["shipme.main"], exclude=["shipme.lazy"]).files.keys() == package.files.keys() - {
        "shipme/lazy.py"
    }


def test_bad_code_is_refused_before_launch_with_the_fix(tmp_path, monkeypatch, make_client):
    folder = str(tmp_path / "proj")
    make_project(
        folder,
        {
            "bulky.py": "BLOB = %r\n\ndef f(x):\n    return x\n" % ("x" * 200_000),
            "withext.py": "def f(x):\n    import myfastlib\n    return myfastlib.go(x)\n",
            # A compiled extension of the user's own (its content does not matter: it is never loaded).
            "myfastlib.cpython-%d%d-x86_64-linux-gnu.so" % sys.version_info[:2]: b"\x7fELF not really",
        },
    )
    bulky = fresh_import(folder, "bulky", monkeypatch)
    client = make_client("s", key_dir=str(tmp_path / "keys"), code_max_bytes=100_000)
    with pytest.raises(ConfigurationError, match=r"code to ship is 0.2 MB, over \[kubeface\] code_max_bytes.*bulky.py"):
        client.map(bulky.f, [1])
    withext = fresh_import(folder, "withext", monkeypatch)
    with pytest.raises(ConfigurationError, match="compiled extension module.*myfastlib.*Install them in the image"):
        client.map(withext.f, [1])
    assert not os.path.exists(os.path.join(str(tmp_path / "s"), "f-"))  # nothing was launched

    class Lock:
        def __reduce__(self):
            raise TypeError("cannot pickle '_thread.lock' object")

    lock = Lock()
    with pytest.raises(ConfigurationError, match="cannot be pickled.*create it inside the function"):
        client.map(lambda x: (lock, x), [1])


def test_a_module_the_analysis_cannot_see_fails_with_how_to_add_it(tmp_path, monkeypatch):
    folder = str(tmp_path / "proj")
    make_project(
        folder,
        {
            "dynamic.py": "import importlib\n\ndef f(x):\n    return importlib.import_module('hidden_' + 'plugin').VALUE + x\n",
            "hidden_plugin.py": "VALUE = 40\n",
        },
    )
    dynamic = fresh_import(folder, "dynamic", monkeypatch)
    settings = dict(storage_root=str(tmp_path / "s"), key_dir=str(tmp_path / "keys"), retries=0, **FAST)
    with pytest.raises(JobFailedError) as caught:
        Client(**settings).map(dynamic.f, [1, 2], job_id="dyn")
    assert "No module named 'hidden_plugin'" in str(caught.value)
    assert "add it to [kubeface] code_include" in str(caught.value)
    assert list(Client(code_include="hidden_plugin", **settings).map(dynamic.f, [1, 2], job_id="dyn")) == [41, 42]


def test_a_function_that_cannot_load_stops_the_job_at_its_first_attempt_with_its_record_and_log(tmp_path, monkeypatch):
    folder = str(tmp_path / "proj")
    make_project(folder, {"notshipped.py": "def f(x):\n    return x\n"})
    module = fresh_import(folder, "notshipped", monkeypatch)
    storage = str(tmp_path / "s")
    client = Client(
        storage_root=storage,
        key_dir=str(tmp_path / "keys"),
        code_exclude="notshipped",
        retries=2,
        max_in_flight=1,
        **FAST,
    )
    with pytest.raises(JobFailedError) as caught:
        client.map(module.f, list(range(20)), job_id="broken")
    text = str(caught.value)
    assert "stopped early" in text and "No module named 'notshipped'" in text
    records = [read_json(p) for p in glob.glob(os.path.join(storage, "broken", "attempts", "*", "*.json"))]
    assert len(records) == 1  # one attempt, not 20 elements times 3 attempts
    assert records[0]["outcome"] == "unusable_input" and records[0]["stage"] == "function"
    assert "ModuleNotFoundError" in records[0]["traceback"]
    (log,) = glob.glob(os.path.join(storage, "broken", "logs", "*", "*.log"))
    assert "No module named 'notshipped'" in read_text(log)
    status = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli", "status", os.path.join(storage, "broken")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "No module named 'notshipped'" in status.stdout and "before reporting an outcome" not in status.stdout


def test_the_environment_check_names_the_package_both_versions_and_the_dockerfile_line():
    assert code_install.check_environment({"pytest": __import__("pytest").__version__}) == []
    with pytest.raises(EnvironmentMismatchError) as caught:
        code_install.check_environment({"no-such-dist-kubeface": "1.2.3", "pytest": "0.1"})
    text = str(caught.value)
    assert "no-such-dist-kubeface: the master has 1.2.3, the image has none" in text
    assert "pytest: the master has 0.1, the image has %s" % __import__("pytest").__version__ in text
    assert "RUN pip install no-such-dist-kubeface==1.2.3" in text and "images/Dockerfile" in text
    major, minor, *_ = __import__("pytest").__version__.split(".")
    warnings = code_install.check_environment({"pytest": "%s.%s.999" % (major, minor)})
    assert warnings and "patch level" in warnings[0]


def test_the_environment_check_reads_each_distribution_once_per_process_and_still_finds_one_missing(monkeypatch):
    """An in-process backend checks thousands of attempts: package metadata is parsed once, not twice per attempt."""
    import importlib.metadata

    reads = []
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: reads.append(name) or real(name))
    code_install._installed_version.cache_clear()
    wanted = {"no-such-dist-kubeface": "1.2.3", "pytest": __import__("pytest").__version__}
    for _ in range(3):
        with pytest.raises(
            EnvironmentMismatchError, match="no-such-dist-kubeface: the master has 1.2.3, the image has"
        ):
            code_install.check_environment(wanted)
    assert code_install.check_environment({"pytest": wanted["pytest"]}) == []
    assert sorted(reads) == ["no-such-dist-kubeface", "pytest"]


def _replay_setup(tmp_path, monkeypatch):
    """A job run with x*10, then its module edited to x*100 and the job prepared again (not launched):
    (job, the first run's code archive and function blob, key)."""
    import importlib

    from luigi_kubeface.bucket import layout as naming
    from luigi_kubeface.job.definition import Job, elements_from_items
    from luigi_kubeface.bucket.signing import KeyRing

    project, root, keys = tmp_path / "project", tmp_path / "s", str(tmp_path / "keys")
    project.mkdir()
    (project / "replayed_scale.py").write_text("def scale(x):\n    return x * 10\n")
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.delitem(sys.modules, "replayed_scale", raising=False)  # each test imports its own
    import replayed_scale

    client = Client(storage_root=str(root), key_dir=keys, retries=0, **FAST)
    assert list(client.map(replayed_scale.scale, [1, 2], job_id="replay")) == [10, 20]
    old_code = {p.name: p.read_bytes() for p in (root / "replay" / "code").iterdir()}
    old_function = (root / "replay" / naming.FUNCTION).read_bytes()
    (project / "replayed_scale.py").write_text("def scale(x):\n    return x * 100\n")
    importlib.reload(replayed_scale)
    job = Job(
        "replay",
        str(root),
        replayed_scale.scale,
        elements_from_items([1, 2], "x"),
        None,
        keys=KeyRing(keys),
        settings=client.settings,
    )
    job.prepare()
    return job, old_code, old_function, KeyRing(keys).load(job.url)


def test_an_older_code_archive_copied_over_the_new_name_is_refused(tmp_path, monkeypatch):
    """Item 3 of the attack review: the old archive is validly signed for this job; only its content tells."""
    from luigi_kubeface.bucket import layout as naming
    from luigi_kubeface.runner import attempt as runner
    from support import run_runner

    job, old_code, _, key = _replay_setup(tmp_path, monkeypatch)
    code = tmp_path / "s" / "replay" / "code"
    (new_name,) = [p for p in code.iterdir() if p.name not in old_code]
    new_name.write_bytes(next(iter(old_code.values())))  # the replay, between prepare and launch
    element = job.elements[0]
    job.store.write_input(element, job.shared_keys, job.code_version)
    attempt = naming.new_attempt_id(2)
    done = run_runner(job.url, element.key, attempt, key, tmp_path)
    result = tmp_path / "s" / "replay" / naming.result_key(element.key, job.code_version)
    assert not result.exists(), "the old code's result was filed under the new code version"
    assert done.returncode == runner.EXIT_UNUSABLE_INPUT
    record = job.store.attempt_record(element.key, attempt)
    assert "does not hold the code its name addresses" in record["message"]


def test_an_older_function_copied_back_is_refused_beside_the_new_input(tmp_path, monkeypatch):
    """The input is signed with the code version it is for: an old function.pkl (and its old archive) does not run it."""
    from luigi_kubeface.bucket import layout as naming
    from luigi_kubeface.runner import attempt as runner
    from support import run_runner

    job, _, old_function, key = _replay_setup(tmp_path, monkeypatch)
    (tmp_path / "s" / "replay" / naming.FUNCTION).write_bytes(old_function)
    element = job.elements[0]
    job.store.write_input(element, job.shared_keys, job.code_version)
    attempt = naming.new_attempt_id(2)
    done = run_runner(job.url, element.key, attempt, key, tmp_path)
    assert done.returncode == runner.EXIT_UNUSABLE_INPUT, (done.stdout + done.stderr).decode()[-3000:]
    record = job.store.attempt_record(element.key, attempt)
    assert "was written for code version" in record["message"]


VENV_PIPELINE = """
import luigi
import labunits
from luigi_kubeface import KubefaceMapTask
from lab_helpers import score


class Scores(KubefaceMapTask):
    def grid(self):
        return [dict(i=i) for i in range(4)]

    def run_element(self, i):
        return score(i) + labunits.UNIT * FACTOR


FACTOR = 1


class Report(luigi.Task):
    def requires(self):
        return Scores()

    def output(self):
        return luigi.LocalTarget("report.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write(" ".join(map(str, self.input().load())))
"""


def make_venv(where):
    """A real virtualenv (no pip: quick) whose interpreter also sees this test run's packages, through a
    .pth file in its own site-packages, where a genuinely installed distribution lives too."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", where], check=True, timeout=300)
    python = os.path.join(where, "bin", "python")
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(os.path.join(p, "luigi"))][0]
    make_project(
        site_packages,
        {
            "kubeface_tests.pth": "import site; site.addsitedir(%r)\n" % ours,
            "labunits/__init__.py": "UNIT = 1000\n",
            "labunits-2.3.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: labunits\nVersion: 2.3.0\n",
            "labunits-2.3.0.dist-info/top_level.txt": "labunits\n",
            "labunits-2.3.0.dist-info/RECORD": "labunits/__init__.py,,\n",
        },
    )
    return python


def report_in(folder, storage, python):
    flags = [
        "--local-scheduler",
        "--workers",
        "1",
        "--kubeface-storage-root",
        storage,
        "--kubeface-key-dir",
        os.path.join(folder, "keys"),
        "--kubeface-poll-interval",
        "0.05",
    ]
    done = run_luigi(
        ["--module", "venv_pipeline", "Report"] + flags, cwd=folder, env={"PYTHONPATH": folder}, python=python
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(folder, "report.txt")) as f:
        values = [int(v) for v in f.read().split()]
    os.unlink(os.path.join(folder, "report.txt"))
    return values


@pytest.mark.slow
def test_a_project_inside_its_virtualenv_folder_ships_and_its_edits_recompute(tmp_path):
    """python3 -m venv x && mkdir x/analysis: the pyvenv.cfg above the project does not make it "installed"."""
    venv = str(tmp_path / "x")
    python = make_venv(venv)
    folder, storage = os.path.join(venv, "analysis"), str(tmp_path / "storage")
    make_project(folder, {"venv_pipeline.py": VENV_PIPELINE, "lab_helpers.py": "def score(i):\n    return i * 10\n"})
    assert report_in(folder, storage, python) == [1000, 1010, 1020, 1030]
    (job_dir,) = glob.glob(os.path.join(storage, "*Scores*"))
    code = read_json(os.path.join(job_dir, "job.json"))["code"]
    assert {"venv_pipeline", "lab_helpers"} <= set(code["modules"])
    # The distribution installed in the virtualenv's site-packages is the image's, not shipped.
    assert code["requirements"].get("labunits") == "2.3.0"
    assert not any(m.startswith(("labunits", "luigi")) for m in code["modules"])

    make_project(folder, {"lab_helpers.py": "def score(i):\n    return i * 20\n"})  # the helper
    assert report_in(folder, storage, python) == [1000, 1020, 1040, 1060]
    with open(os.path.join(folder, "venv_pipeline.py")) as f:
        source = f.read()
    make_project(folder, {"venv_pipeline.py": source.replace("UNIT * FACTOR", "UNIT * FACTOR + 1")})  # run_element
    assert report_in(folder, storage, python) == [1001, 1021, 1041, 1061]


def test_only_the_interpreters_own_paths_are_installed(tmp_path):
    venv = tmp_path / "env"
    make_project(str(venv), {"pyvenv.cfg": "home = /usr/bin\n", "analysis/mine.py": "X = 1\n"})
    assert code_discover.is_user_path(str(venv / "analysis" / "mine.py"))
    assert not code_discover.is_user_path(str(venv / "lib" / "python3" / "site-packages" / "dep.py"))
    assert not code_discover.is_user_path(__import__("luigi").__file__)
    assert not code_discover.is_user_path(json.__file__)


def test_the_runners_install_imports_neither_discovery_nor_the_code_version_and_nothing_is_read_at_import():
    """The runner imports job/code/install.py alone; the installed roots are read when first used, not at import."""
    script = (
        "import sys, luigi_kubeface.job.code.install\n"
        "print(sorted(m for m in sys.modules if m.startswith('luigi_kubeface.job.code.')))\n"
        "from luigi_kubeface.job.code import discover\n"
        "print(discover.this_environment.cache_info().currsize)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['luigi_kubeface.job.code.install']"
    assert out[1] == "0"


DATA_PIPELINE = """
import luigi
from luigi_kubeface import KubefaceMapTask


class Lengths(KubefaceMapTask):
    def grid(self):
        return [dict(i=i) for i in range(3)]

    def run_element(self, i):
        with open("data/proteins.txt") as f:  # relative to the project's root, as on the master
            return len(f.read().split()[i])


class LengthReport(luigi.Task):
    def requires(self):
        return Lengths()

    def output(self):
        return luigi.LocalTarget("lengths.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write(" ".join(map(str, self.input().load())))
"""


def lengths_in(folder, storage, *args):
    flags = [
        "--local-scheduler",
        "--workers",
        "1",
        "--kubeface-storage-root",
        storage,
        "--kubeface-retries",
        "0",
        "--kubeface-key-dir",
        os.path.join(folder, "keys"),
        "--kubeface-poll-interval",
        "0.05",
    ]
    return run_luigi(
        ["--module", "data_pipeline", "LengthReport"] + flags + list(args), cwd=folder, env={"PYTHONPATH": folder}
    )


@pytest.mark.slow
def test_an_element_runs_in_the_projects_root_and_opens_a_shipped_data_file_by_its_relative_path(tmp_path):
    """open("data/proteins.txt") in run_element, with code_include = data/proteins.txt, through luigi."""
    folder, storage = str(tmp_path / "project"), str(tmp_path / "storage")
    make_project(folder, {"data_pipeline.py": DATA_PIPELINE, "data/proteins.txt": "P1 Q22 R333\n"})
    done = lengths_in(folder, storage, "--kubeface-code-include", "data/proteins.txt")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(folder, "lengths.txt")) as f:
        assert f.read() == "2 3 4"


@pytest.mark.slow
def test_a_data_file_not_shipped_fails_with_a_hint_naming_code_include(tmp_path):
    folder, storage = str(tmp_path / "project"), str(tmp_path / "storage")
    make_project(folder, {"data_pipeline.py": DATA_PIPELINE, "data/proteins.txt": "P1 Q22 R333\n"})
    failed = lengths_in(folder, storage)
    assert failed.returncode != 0 and not os.path.exists(os.path.join(folder, "lengths.txt"))
    records = [read_json(p) for p in glob.glob(os.path.join(storage, "*Lengths*", "attempts", "*", "*.json"))]
    (message, *_) = [r["message"] for r in records if r["error_type"] == "FileNotFoundError"]  # others: cancelled
    assert "'data/proteins.txt'" in message and "code_include = data/proteins.txt" in message, message
    assert "code_include" in failed.stderr, failed.stderr[-3000:]

    # `kubeface reproduce`, run from the project's folder, meets the pods' failure: it too runs in the code shipped.
    config = os.path.join(folder, "reproduce.cfg")
    with open(config, "w") as f:
        f.write("[kubeface]\nkey_dir = %s\nstorage_root = %s\n" % (os.path.join(folder, "keys"), storage))
    (job_dir,) = glob.glob(os.path.join(storage, "*Lengths*"))
    again = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.cli", "reproduce", job_dir, "@1"],
        cwd=folder,
        env=dict(os.environ, LUIGI_CONFIG_PATH=config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and "FileNotFoundError" in again.stderr + again.stdout, again.stderr[-3000:]


def test_code_include_never_ships_keys_dotfiles_or_links_out_of_the_project(tmp_path, monkeypatch, caplog):
    """Hardening of issue 25: `.env`, `.aws/credentials`, a link to a file outside the project and the team key
    inside an included folder were all shipped in the bucket's code archive."""
    project, outside = tmp_path / "project", tmp_path / "outside"
    make_project(
        str(project),
        {
            "app.py": "def f(x):\n    return x\n",
            "conf/settings.txt": "a=1\n",
            "conf/team.key": "SECRET-KEY\n",
            "conf/.env": "TOKEN=1\n",
            "conf/.aws/credentials": "[default]\nkey=2\n",
            ".extra": "named one by one\n",
        },
    )
    make_project(str(outside), {"private.txt": "not the project's\n"})
    os.symlink(outside / "private.txt", project / "conf" / "linked.txt")
    os.symlink(outside, project / "conf" / "linked-folder")
    monkeypatch.syspath_prepend(str(project))
    caplog.set_level("INFO")
    package = code_discover.build(
        ["app"],
        include=[str(project / "conf"), str(project / ".extra")],
        secrets=[str(project / "conf" / "team.key"), str(tmp_path / "keys")],
    )
    shipped = set(package.files)
    assert {"app.py", "conf/settings.txt", ".extra"} <= shipped, shipped
    assert not shipped & {"conf/team.key", "conf/.env", "conf/.aws/credentials", "conf/linked.txt"}, shipped
    assert not [p for p in shipped if p.startswith("conf/linked-folder")], shipped
    assert "conf ships 1 file(s): conf/settings.txt" in caplog.text
    with pytest.raises(ConfigurationError, match="signing key"):
        code_discover.build(
            ["app"], include=[str(project / "conf" / "team.key")], secrets=[str(project / "conf" / "team.key")]
        )
