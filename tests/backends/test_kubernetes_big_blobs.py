"""A pod sized for its work holds a 1 GB result once (issue 13), on the test cluster's real node.

The pod's memory limit is a real memory cgroup, where the page cache of the files a result streams
through counts too: over limits.memory, the kernel OOM-kills it (reason OOMKilled). Before results
streamed through files, a 1 GB result took about 3 GB in the element and its pod was OOMKilled at
1400Mi. Storage is fake-gcs-server, so the result goes up by the GCS client's resumable upload. The
element also writes its kernel peak (VmHWM) at exit into the bucket, to report how close it came.
"""

import hashlib
import os

import pytest

from kube_support import kube_settings
from luigi_kubeface import Client
from luigi_kubeface.job.definition import Job
from luigi_kubeface.storage import open_storage

pytestmark = pytest.mark.slow

GB = 1 << 30
LIMIT_MB = 1400


def big_array(seed, size=GB, report=""):
    """size random bytes as a NumPy uint8 array; at exit the process's peak RSS goes to <report>/element-<pid>
    (a storage URL: the pod shares nothing else with the test)."""
    import atexit

    import numpy

    from luigi_kubeface.storage import open_storage

    def write_peak():  # at the runner's exit: after its result was pickled and written
        with open("/proc/self/status") as f:
            peak = next(line for line in f if line.startswith("VmHWM:")).split()[1]
        open_storage(report).write("element-%d" % os.getpid(), peak.encode())

    if report:
        atexit.register(write_peak)
    return numpy.random.default_rng(seed).integers(0, 256, size, dtype=numpy.uint8)


def peak_mb():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024.0


def test_a_1gb_result_fits_a_1400mi_pod(kube_cluster, kube_namespace, fake_gcs, gcs_root, tmp_path):
    report = gcs_root + "/peaks"
    settings = kube_settings(
        kube_cluster,
        kube_namespace,
        fake_gcs,
        gcs_root,
        memory_request="256Mi",
        memory_limit="%dMi" % LIMIT_MB,
        ephemeral_storage_request="2Gi",
        element_timeout=900,
        retries=0,
    )
    with open("/proc/self/clear_refs", "w") as f:  # restart this process's VmHWM: the master is this process
        f.write("5")
    before_mb = peak_mb()
    results = Client(settings).map(big_array, [7], job_id="one-gb", shared={"report": report})
    master_mb = peak_mb() - before_mb

    job = Job("one-gb", settings.storage_root).store
    key = job.finished().pop()
    records = [job.attempt_record(key, a) for a in job.attempts(key)]
    assert [r["outcome"] for r in records] == ["success"], records
    peak_store = open_storage(report)
    peaks = [int(peak_store.read(name)) / 1024.0 for name in peak_store.list("")]
    assert len(peaks) == 1 and peaks[0] < LIMIT_MB, peaks  # the element's own peak; the cgroup did not kill it
    assert master_mb < 300, master_mb  # the end-of-attempt check read at most 1 MB of the result

    value = results[0]
    expected = big_array(7)
    assert value.dtype == expected.dtype and value.shape == (GB,)
    assert bytes(value[:64]) == bytes(expected[:64])
    assert hashlib.sha256(value).digest() == hashlib.sha256(expected).digest()
    print("element peak %.0f MiB, master peak rise %.0f MiB while the job ran" % (peaks[0], master_mb))
