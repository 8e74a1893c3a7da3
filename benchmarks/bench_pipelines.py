"""What the benchmarks run through `luigi --module bench_pipelines`: a trivial map task and its stock-Luigi peer.

Importing this module registers the `instant` backend (attempts run in the master process, at once,
through the task runner's own code), so `--kubeface-backend instant` measures the master alone.
"""

import os

import luigi

from luigi_kubeface import KubefaceMapTask
from luigi_kubeface.backends import REGISTRY
from luigi_kubeface.backends.simulated import SimulatedBackend

REGISTRY.setdefault("instant", lambda settings: SimulatedBackend(settings))


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
