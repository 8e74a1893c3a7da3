"""The attempt's log file in $TMPDIR: private, unpredictable, never a planted link, and always removed."""

import os
import subprocess
import sys

from luigi_kubeface.bucket import blobs as serialization
from luigi_kubeface.job.definition import Job, elements_from_items
from luigi_kubeface.bucket.signing import KeyRing
from support import REPO, TESTS


def temp_files(x):
    """The files in this attempt's $TMPDIR while it runs, with their modes."""
    directory = os.environ["TMPDIR"]
    return {name: oct(os.stat(os.path.join(directory, name)).st_mode & 0o777) for name in os.listdir(directory)}


def test_a_planted_log_link_is_not_followed_and_the_log_is_private(tmp_path):
    keys = KeyRing(str(tmp_path / "keys"))
    job = Job("log", str(tmp_path / "s"), temp_files, elements_from_items([1]), keys=keys)
    job.prepare()
    (element,) = job.elements
    job.store.write_input(element, job.shared_keys, job.code_version)
    attempt = "001-1-aaaaaaaaaaaa"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, tmp / ("kubeface-%s-%s.log" % (element.key, attempt)))  # the old, predictable name
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS]), TMPDIR=str(tmp), **job.store.secret_env())
    done = subprocess.run(
        [sys.executable, "-m", "luigi_kubeface.runner", job.url, element.key, attempt],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    seen = job.store.load_result(element.key)
    (log,) = [name for name in seen if not name.startswith(("kubeface-%s" % element.key, "kubeface-code-"))]
    assert seen[log] == "0o600" and element.key not in log
    assert os.listdir(tmp) == ["kubeface-%s-%s.log" % (element.key, attempt)]  # only the planted link is left
    assert serialization.KEY_ENV  # the key reached the runner through its environment (Kubernetes' path)
