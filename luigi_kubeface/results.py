"""Collected results, loaded lazily: each may be gigabytes, so nothing is read until asked for.

Their parameters and numbers (records(), to_pandas()) come from the attempt records instead, where
the runner summarised each result (summary.py): comparing 50,000 elements reads no result.
"""

import logging
from collections.abc import Sequence

from .errors import ConfigurationError, CorruptBlobError
from .views.result_table import column_names, record, result_rows

ALL_RECORDS = 10**9

log = logging.getLogger(__name__)


class Results(Sequence):
    """The results of a job in element order; indexing or iterating downloads one result at a time."""

    def __init__(self, job, keys):
        self.job = job
        self.keys = list(keys)
        self.summary_notes = []  # what the last records() refused or counted unverified (also logged)

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Results(self.job, self.keys[index])
        try:
            return self.job.store.load_result(self.keys[index])
        except CorruptBlobError as error:  # rare: check the others now so that one rerun repairs all
            others = self.job.store.sweep_results(k for k in self.keys if k != self.keys[index])
            if not others:
                raise
            raise type(error)(
                "%s\n%d more damaged result(s) of this job were moved aside too (elements %s): "
                "one rerun recomputes them all" % (error, len(others), ", ".join(others[:10]))
            ) from None

    def records(self):
        """One dict per element, in element order: its parameters, then its result's summary values.

        A result that is a number is {"value": x}; a dict of numbers gives its entries; a result with no
        numeric summary gives the parameters alone. A value named like a parameter becomes result.<name>.
        Only summaries the runner signed and that verify count (summary_seal.py); each kind refused is
        logged and kept in summary_notes, and such an element gives its parameters alone.
        """
        from .views.job_state import JobState  # the job's view from storage: elements.json and attempt records

        if not self.keys:
            return []  # a map over nothing: no job in storage to read
        state = JobState(self.job, max_reads=ALL_RECORDS, read_live=False).refresh()
        mine = {e.key: e for e in self.job.elements}  # the master's own grid, else elements.json's
        stored = dict(zip(state.keys, zip(state.labels, state.params)))
        labels, params = [], []
        for key in self.keys:
            element = mine.get(key)
            label, values = (element.label, element.params or {}) if element else stored.get(key, (key, {}))
            labels.append(label)
            params.append(values)
        rows = result_rows(state.elements(grid=(self.keys, labels, params)))
        self.summary_notes = state.summary_notes()
        for note in self.summary_notes:
            log.warning("job %s: %s", self.job.id, note)
        columns = column_names(rows)
        return [record(row, columns) for row in rows]

    def to_pandas(self):
        """records() as a pandas DataFrame, one row per element in element order (pandas is optional)."""
        try:
            import pandas
        except ImportError:
            raise ConfigurationError(
                "to_pandas() needs pandas, which luigi-kubeface does not install: "
                "pip install pandas (or luigi-kubeface[pandas]), or use records()"
            ) from None
        return pandas.DataFrame.from_records(self.records())

    def __repr__(self):
        return "<Results of job %s: %d elements>" % (self.job.id, len(self.keys))
