"""Map tasks of one class name in two projects sharing a storage root are two jobs; old-id jobs stay in use.

Each project lives in a temporary folder outside the repository, run through the real `luigi` command.
"""

import glob
import json
import os
import textwrap

from support import run_luigi

PROJECT = """
import luigi
from luigi_kubeface import KubefaceMapTask
from luigi_kubeface.bucket import layout as naming


class TrainModels(KubefaceMapTask):
    old_id = luigi.BoolParameter(default=False, significant=False)

    def grid(self):
        return [dict(i=i) for i in range(3)]

    def run_element(self, i):
        return i + OFFSET

    def code_version(self):
        return "v1"  # pinned alike in both projects: only the job id keeps their results apart

    def job_id(self):  # the id masters gave before the module was part of it
        return naming.job_id_from_task_id(self.task_id) if self.old_id else super().job_id()


class Report(luigi.Task):
    old_id = luigi.BoolParameter(default=False, significant=False)

    def requires(self):
        return TrainModels(old_id=self.old_id)

    def output(self):
        return luigi.LocalTarget("report.json")

    def run(self):
        with self.output().open("w") as f:
            json.dump(list(self.input().load()), f)
"""


def project(tmp_path, name, offset):
    folder = tmp_path / name
    folder.mkdir()
    (folder / (name + ".py")).write_text("import json\nOFFSET = %d\n" % offset + textwrap.dedent(PROJECT))
    return folder


def run(folder, storage, *args):
    flags = [
        "--local-scheduler",
        "--kubeface-storage-root",
        str(storage),
        "--kubeface-poll-interval",
        "0.05",
        "--kubeface-key-dir",
        str(storage.parent / "keys"),
    ]
    result = run_luigi(
        ["--module", folder.name, "Report"] + flags + list(args), cwd=str(folder), env={"PYTHONPATH": str(folder)}
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (folder / "report.json").rename(folder / "last-report.json")
    return json.loads((folder / "last-report.json").read_text()), result.stdout + result.stderr


def attempts(storage):
    return len(glob.glob(str(storage / "*" / "attempts" / "*" / "*.json")))


def test_two_projects_with_one_class_name_never_share_a_job(tmp_path):
    storage = tmp_path / "lab-bucket"
    a, b = project(tmp_path, "proteome_a", 100), project(tmp_path, "proteome_b", 200)
    assert run(a, storage)[0] == [100, 101, 102]
    assert run(b, storage)[0] == [200, 201, 202]  # not project A's numbers, though both pin "v1"
    assert run(a, storage)[0] == [100, 101, 102]  # and B's run deleted none of A's results
    assert attempts(storage) == 6
    jobs = sorted(os.listdir(storage))
    assert jobs == ["proteome_a.TrainModels__99914b932b", "proteome_b.TrainModels__99914b932b"]
    meta = json.loads((storage / jobs[0] / "job.json").read_text())
    assert meta["task"] == "proteome_a.TrainModels"


def test_a_job_stored_under_the_old_id_is_reused_by_its_own_project_only(tmp_path):
    storage = tmp_path / "lab-bucket"
    a, b = project(tmp_path, "proteome_a", 100), project(tmp_path, "proteome_b", 200)
    assert run(a, storage, "--old-id")[0] == [100, 101, 102]
    (old,) = os.listdir(storage)
    assert old == "TrainModels__99914b932b"
    meta_path = storage / old / "job.json"
    meta = json.loads(meta_path.read_text())
    del meta["task"]  # job.json as masters before the new ids wrote it: the function and shipped modules
    meta_path.write_text(json.dumps(meta))

    assert run(a, storage)[0] == [100, 101, 102]
    assert attempts(storage) == 3  # project A reused its old job: nothing recomputed
    assert os.listdir(storage) == [old]

    assert run(b, storage)[0] == [200, 201, 202]  # project B does not take A's job
    assert sorted(os.listdir(storage)) == sorted([old, "proteome_b.TrainModels__99914b932b"])
    assert run(a, storage)[0] == [100, 101, 102] and attempts(storage) == 6
