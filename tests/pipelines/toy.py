"""Small pipelines that misbehave on purpose, for the end-to-end tests."""

import os
import signal
import subprocess
import sys
import time

import luigi

from luigi_kubeface import KubefaceMapTask


class Squares(KubefaceMapTask):
    """x -> x*x; elements listed in `bad` misbehave as `mode` says."""

    n = luigi.IntParameter(default=6)
    # Insignificant: a rerun with the misbehaviour "fixed" is the same job, like a user's code fix.
    mode = luigi.Parameter(default="ok", significant=False)  # raise | sleep | child | exit | kill | flaky | unpicklable
    bad = luigi.ListParameter(default=[], significant=False)
    seconds = luigi.FloatParameter(default=30.0, significant=False)
    marker_dir = luigi.Parameter(default="", significant=False)

    def grid(self):
        return [dict(x=i) for i in range(self.n)]

    def run_element(self, x):
        print("element x=%d starting" % x)
        if x in self.bad:
            if self.mode == "raise":
                raise ValueError("x=%d is bad on purpose" % x)
            if self.mode == "sleep":
                time.sleep(self.seconds)
            if self.mode == "child":  # the element waits on a process of its own
                subprocess.run(["sleep", str(self.seconds)], check=True)
            if self.mode == "exit":
                sys.exit(3)
            if self.mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.mode == "unpicklable":
                return (i for i in range(x))  # generators cannot be pickled
            if self.mode == "flaky":
                marker = os.path.join(self.marker_dir, "failed-once-%d" % x)
                if not os.path.exists(marker):
                    open(marker, "w").close()
                    raise RuntimeError("first attempt of x=%d fails" % x)
        return x * x


class SumSquares(luigi.Task):
    n = luigi.IntParameter(default=6)

    def requires(self):
        return Squares(n=self.n)

    def output(self):
        return luigi.LocalTarget("sum-%d.txt" % self.n)

    def run(self):
        with self.output().open("w") as f:
            f.write(str(sum(self.input().load())))


class TwoGrids(luigi.WrapperTask):
    """Two map tasks (two jobs) at once under `--workers 2`, each element sleeping `seconds`."""

    n = luigi.IntParameter(default=4)
    seconds = luigi.FloatParameter(default=1.0)

    def requires(self):
        return [Squares(n=n, mode="sleep", bad=list(range(n)), seconds=self.seconds) for n in (self.n, self.n + 1)]
