"""What the benchmarks run through `luigi --module bench_pipelines`: a trivial map task and its stock-Luigi peer.

Importing this module registers two in-process backends, whose attempts end at once:
- `instant`: each attempt runs the task runner's own code in the master process (fetch, verify,
  unpickle, run, sign and write the result), so the time is the master's plus the runner's;
- `results-only`: each attempt files a signed result of None and its success record, as the runner
  would, without running the runner's code (no fetch, no unpickling), so the time is the master's own.
"""

import os
import time

import luigi

from luigi_kubeface import KubefaceMapTask
from luigi_kubeface.bucket import (
    attempts,
    blobs as serialization,
    layout as naming,
    seal as summary_seal,
    signing as keys,
)
from luigi_kubeface.runner import attempt as runner, summary
from luigi_kubeface.backends import AttemptEnd, REGISTRY
from luigi_kubeface.backends.simulated import SimulatedBackend, success_record


class ResultsOnlyBackend(SimulatedBackend):
    """The master's own cost: each attempt's result and record written at once, the runner's work skipped."""

    def __init__(self, settings=None):
        super().__init__(settings)
        self._versions = {}  # job URL -> the code version its function was filed under (read once)

    def _end(self, spec, script):
        storage = self._storage(spec.job_url)
        key = bytes(runner.signing_key_from_env(dict(spec.secret_env)))
        if spec.job_url not in self._versions:
            header, _ = serialization.read_header(storage.read(naming.FUNCTION), key=key, check_payload=False)
            self._versions[spec.job_url] = header.get("code_version", "")
        version = self._versions[spec.job_url]
        signer = keys.attempt_key(key, spec.job_id, spec.element, version, spec.attempt)
        extra = {
            "element": spec.element,
            "attempt": spec.attempt,
            "job": spec.job_id,
            "signer": keys.ATTEMPT_SIGNER,
            "code_version": version,
        }
        with serialization.Pickled(None) as pickled:
            blob = pickled.blob("result", extra, signer)
            won = storage.write_stream_if_absent(naming.result_key(spec.element, version), blob, blob.size)
        now = time.time()
        record = success_record(
            element=spec.element,
            attempt=spec.attempt,
            code_version=version,
            result_written=won,
            result_bytes=blob.size,
            started=now,
            finished=now,
            duration=0.0,
            **serialization.versions(),
            **summary.describe(None),
        )
        summary_seal.seal(record, signer, spec.job_id, spec.element, spec.attempt)  # as the runner signs its summary
        attempts.write_record(storage, spec.element, spec.attempt, record)
        return AttemptEnd(attempt=spec.attempt, exit_code=0, reason="the attempt exited with code 0")


REGISTRY.setdefault("instant", lambda settings: SimulatedBackend(settings))
REGISTRY.setdefault("results-only", ResultsOnlyBackend)


def trivial(x):
    return x


class TrivialMap(KubefaceMapTask):
    """N elements that return their own parameter."""

    n = luigi.IntParameter()

    def grid(self):
        return [dict(x=i) for i in range(self.n)]

    def run_element(self, x):
        return x


class StockElement(luigi.Task):
    """The peer: one plain Luigi task per element, writing its result to a local file."""

    x = luigi.IntParameter()
    out = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(self.out, "%d.txt" % self.x))

    def run(self):
        with self.output().open("w") as f:
            f.write(str(self.x))


class StockMap(luigi.Task):
    n = luigi.IntParameter()
    out = luigi.Parameter()

    def requires(self):
        return [StockElement(x=i, out=self.out) for i in range(self.n)]

    def output(self):
        return luigi.LocalTarget(os.path.join(self.out, "all-%d.txt" % self.n))

    def run(self):
        with self.output().open("w") as f:
            f.write("%d\n" % len(self.input()))
