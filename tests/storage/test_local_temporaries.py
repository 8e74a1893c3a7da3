"""A write cut short by a kill leaves a temporary file; the local storage removes it once its writer is gone."""

import os
import subprocess
import sys

from luigi_kubeface.storage import local, open_storage


def test_a_temporary_file_of_a_dead_writer_is_removed_when_its_directory_is_listed(tmp_path):
    storage = open_storage(str(tmp_path))
    storage.write("results/a.pkl", b"done")
    dead = subprocess.Popen(["true"])
    dead.wait()
    results = tmp_path / "results"
    orphan = results / (".tmp-%s-%d-0001" % (local._HOST, dead.pid))
    writing = results / (".tmp-%s-%d-0002" % (local._HOST, os.getpid()))  # a write still going on
    elsewhere = results / (".tmp-another_host-%d-0003" % dead.pid)  # a writer this host cannot judge
    for path in (orphan, writing, elsewhere):
        path.write_bytes(b"partial")
    assert storage.list("results/") == ["results/a.pkl"]
    assert sorted(os.listdir(results)) == sorted(["a.pkl", writing.name, elsewhere.name])


def test_a_writer_killed_mid_write_leaves_nothing_behind_after_a_listing(tmp_path):
    script = (
        "import sys, time\nfrom luigi_kubeface.storage import open_storage\n"
        "class Slow:\n    def read(self, n=-1):\n        time.sleep(60)\n        return b''\n"
        "open_storage(sys.argv[1]).write_if_absent('results/b.pkl', Slow())\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    results = tmp_path / "results"
    while not (results.is_dir() and os.listdir(results)):
        assert writer.poll() is None
    writer.kill()
    writer.wait()
    assert os.listdir(results)  # its temporary file
    assert open_storage(str(tmp_path)).list("results/") == []
    assert os.listdir(results) == []
