"""A map task's grid may read its requirements' outputs; an empty grid is a map over nothing; a map task
that overrides output() or run() is refused when it is defined.

The proteome case, run as a user runs it: a pipeline in a temporary folder outside the repository,
through the real `luigi` command, with one and four workers and under a real luigid.
"""

import json
import os

import pytest

from support import run_luigi

PIPELINE = '''
import luigi
from luigi_kubeface import KubefaceMapTask


class Proteins(luigi.Task):
    """The upstream: the protein IDs a filter kept (none when n is 0)."""
    n = luigi.IntParameter(default=5)

    def output(self):
        return luigi.LocalTarget("proteins-%d.txt" % self.n)

    def run(self):
        with self.output().open("w") as f:
            f.write("".join("P%05d\\n" % (7 * i) for i in range(self.n)))


class Score(KubefaceMapTask):
    n = luigi.IntParameter(default=5)
    # The natural workaround: a placeholder grid while the input is missing. It must never run.
    placeholder = luigi.BoolParameter(default=False, significant=False)

    def requires(self):
        return Proteins(n=self.n)

    def grid(self):
        if self.placeholder and not self.input().exists():
            return [dict(protein="PLACEHOLDER")]
        with self.input().open() as f:
            return [dict(protein=line.strip()) for line in f if line.strip()]

    def run_element(self, protein):
        return int(protein[1:]) + 0.5


class Report(luigi.Task):
    n = luigi.IntParameter(default=5)
    placeholder = luigi.BoolParameter(default=False, significant=False)

    def requires(self):
        return Score(n=self.n, placeholder=self.placeholder)

    def output(self):
        return luigi.LocalTarget("report-%d.json" % self.n)

    def run(self):
        rows = [[r["protein"], r["value"]] for r in self.input().records()]
        with self.output().open("w") as f:
            json.dump({"rows": rows, "loaded": list(self.input().load())}, f)
'''


def pipeline(tmp_path, source=PIPELINE, name="proteome"):
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / (name + ".py")).write_text("import json\n" + source)
    return folder


def luigi_in(folder, *args, scheduler=None, name="proteome"):
    flags = [
        "--kubeface-storage-root",
        str(folder.parent / "storage"),
        "--kubeface-poll-interval",
        "0.05",
        "--kubeface-key-dir",
        str(folder.parent / "keys"),
    ]
    flags += (
        ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(scheduler.port)]
        if scheduler
        else ["--local-scheduler"]
    )
    result = run_luigi(["--module", name] + list(args) + flags, cwd=str(folder), env={"PYTHONPATH": str(folder)})
    return result, result.stdout + result.stderr


def expected_rows(n):
    return [["P%05d" % (7 * i), 7 * i + 0.5] for i in range(n)]


def check_report(folder, n=5):
    report = json.loads((folder / ("report-%d.json" % n)).read_text())
    assert report["rows"] == expected_rows(n)
    assert report["loaded"] == [row[1] for row in expected_rows(n)]
    storage = folder.parent / "storage"
    assert "PLACEHOLDER" not in "".join((storage / job / "elements.json").read_text() for job in os.listdir(storage))


@pytest.mark.parametrize("workers,placeholder", [("1", False), ("4", True)])
def test_a_grid_read_from_the_upstream_output_runs_once_the_upstream_ran(tmp_path, workers, placeholder):
    folder = pipeline(tmp_path)
    result, output = luigi_in(folder, "Report", "--workers", workers, *(["--placeholder"] if placeholder else []))
    assert result.returncode == 0, output[-3000:]
    assert "FileNotFoundError" not in output
    check_report(folder)
    (folder / "report-5.json").unlink()
    result, output = luigi_in(folder, "Report", "--workers", workers)
    assert result.returncode == 0, output[-3000:]
    assert "to run" not in output  # the map task was complete: nothing dispatched again
    check_report(folder)


@pytest.mark.slow
def test_a_grid_read_from_the_upstream_output_under_luigid(tmp_path, luigid):
    folder = pipeline(tmp_path)
    result, output = luigi_in(folder, "Report", "--n", "5", "--workers", "4", scheduler=luigid)
    assert result.returncode == 0, output[-3000:]
    check_report(folder)
    done = luigid.tasks("DONE")
    elements = [t for t in done.values() if t["name"] == "KubefaceElement" and "proteome.Score" in t["params"]["job"]]
    assert sorted(t["params"]["params"] for t in elements) == sorted("protein=%r" % p for p, _ in expected_rows(5))


def test_an_empty_grid_is_a_map_over_nothing_and_downstream_runs(tmp_path):
    folder = pipeline(tmp_path)
    result, output = luigi_in(folder, "Report", "--n", "0", "--workers", "2")
    assert result.returncode == 0, output[-3000:]
    assert json.loads((folder / "report-0.json").read_text()) == {"rows": [], "loaded": []}
    assert not (folder.parent / "storage").exists() or not os.listdir(folder.parent / "storage")  # nothing to store


@pytest.mark.parametrize("method", ["output", "run"])
def test_a_map_task_that_defines_its_own_output_or_run_is_refused_at_once(tmp_path, method):
    own = {
        "output": "    def output(self):\n        return luigi.LocalTarget('scores.txt')\n",
        "run": "    def run(self):\n        pass\n",
    }[method]
    source = PIPELINE.replace("    def run_element(self, protein):", own + "\n    def run_element(self, protein):")
    folder = pipeline(tmp_path, source)
    result, output = luigi_in(folder, "Report")
    assert result.returncode != 0
    assert "proteome.Score defines %s(), which a KubefaceMapTask must not" % method in output, output[-3000:]
    assert not (folder.parent / "storage").exists()
