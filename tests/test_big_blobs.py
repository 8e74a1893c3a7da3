"""Big results and shared inputs are held in memory once: peak RSS of the element and the master.

Each run is its own master process (tests/big_blobs_probe.py) on the local backend; peaks come
from getrusage (the element: RUSAGE_CHILDREN of the master, which waits for every runner). Sizes
keep CI quick; benchmarks/bench_big_blobs.py runs 1 GB. Memory is asserted, never time.
"""

import json
import os
import subprocess
import sys

import pytest

from support import REPO, TESTS

MB = 256
RUNTIME = 80  # MB a runner or master holds besides the blobs (Python, cloudpickle, numpy), rounded up


@pytest.fixture(params=["file", "s3"])
def root(request):
    """A local directory, and an S3 bucket (multipart uploads, ranged GETs: the same bounds)."""
    return request.getfixturevalue(request.param + "_root")


def probe(tmp_path, root, size_mb, count, kind, shared_mb=0):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(TESTS, "big_blobs_probe.py"),
            root,
            str(tmp_path / "keys"),
            str(size_mb),
            str(count),
            kind,
            str(shared_mb),
        ],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_big_result_is_held_once_by_the_element_and_never_by_the_checking_master(tmp_path, root):
    figures = probe(tmp_path, root, MB, 2, "bytes")
    # Before streaming: 3 copies in the element, 1 in the master while checking, 2 after load().
    assert figures["element_mb"] < MB + 2 * RUNTIME, figures
    assert figures["master_checking_mb"] < MB / 2, figures
    assert figures["master_after_load_mb"] < MB + 2 * RUNTIME, figures


@pytest.mark.slow
def test_numpy_results_and_a_big_shared_input_are_held_once(tmp_path, root):
    figures = probe(tmp_path, root, MB, 1, "numpy", shared_mb=MB)
    # The element holds the shared input and its result, once each; the master the shared input once.
    assert figures["element_mb"] < 2 * MB + 2 * RUNTIME, figures
    assert figures["master_checking_mb"] < MB + 2 * RUNTIME, figures
