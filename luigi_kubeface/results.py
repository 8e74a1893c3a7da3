"""Collected results, loaded lazily: each may be gigabytes, so nothing is read until asked for."""

from collections.abc import Sequence


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
        return self.job.load_result(self.keys[index])

    def __repr__(self):
        return "<Results of job %s: %d elements>" % (self.job.id, len(self.keys))
