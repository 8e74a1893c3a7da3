"""Collected results, loaded lazily: each may be gigabytes, so nothing is read until asked for."""

from collections.abc import Sequence

from .errors import CorruptBlobError


class Results(Sequence):
    """The results of a job in element order; indexing or iterating downloads one result at a time."""

    def __init__(self, job, keys):
        self.job = job
        self.keys = list(keys)

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Results(self.job, self.keys[index])
        try:
            return self.job.load_result(self.keys[index])
        except CorruptBlobError as error:  # rare: check the others now so that one rerun repairs all
            others = self.job.sweep_results(k for k in self.keys if k != self.keys[index])
            if not others:
                raise
            raise type(error)("%s\n%d more damaged result(s) of this job were moved aside too (elements %s): "
                              "one rerun recomputes them all" % (error, len(others), ", ".join(others[:10]))) from None

    def __repr__(self):
        return "<Results of job %s: %d elements>" % (self.job.id, len(self.keys))
