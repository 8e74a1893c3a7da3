"""A job's elements as rows of results, ranked best first: what `kubeface results`, records() and
the status page's Results section share.

Built from ElementViews (job_state.py), that is from elements.json and the attempt records, whose
`summary` the runner wrote (summary.py): the results themselves are never read.
"""

import math
from dataclasses import dataclass, field

from ..errors import ConfigurationError
from .states import ElementState

# Where elements without a value go, after every ranked one: failed first, never run last.
_STATE_ORDER = {
    ElementState.DONE: 0,
    ElementState.FAILED: 1,
    ElementState.CANCELLED: 2,
    ElementState.UNFINISHED: 3,
    ElementState.RUNNING: 4,
    ElementState.PENDING: 5,
    ElementState.NOT_RUN: 6,
}


_NUMBERS = (float, int, bool)


@dataclass
class ResultRow:
    index: int  # position in the grid
    key: str
    label: str
    params: dict  # parameter name -> JSON value
    values: dict = field(default_factory=dict)  # summary name -> number or bool (or None: NaN)
    state: ElementState = ElementState.DONE
    duration: float = None
    code_version: str = ""
    result_type: str = ""
    error: str = ""
    usage: object = None  # the element's own cost.Usage (None: no attempt record tells it)

    def value(self, name):
        """A summary value as a float for ranking and charts, or None when it is absent or not a number."""
        value = self.values.get(name)
        if type(value) in _NUMBERS:  # JSON gives exactly these (an altered record may give anything)
            value = float(value)
            return value if math.isfinite(value) else None
        return None


def result_rows(elements):
    """One row per ElementView; an element of a job that kept no parameters shows its label as one."""
    rows = []
    for element in elements:
        record = element.result_record if element.state == ElementState.DONE else None
        summary = (record or {}).get("summary")
        rows.append(
            ResultRow(
                element.index,
                element.key,
                element.label,
                dict(element.params) if element.params else {"parameters": element.label},
                summary if isinstance(summary, dict) else {},
                element.state,
                element.duration,
                (record or {}).get("code_version", ""),
                (record or {}).get("result_type", ""),
                element.error,
                element.usage,
            )
        )
    return rows


def _names(dicts):
    seen = {}
    for d in dicts:
        for name in d:
            seen.setdefault(name, None)
    return list(seen)


def param_names(rows):
    return _names(row.params for row in rows)


def value_names(rows):
    """Summary value names in order of first appearance (the first is the default metric)."""
    return _names(row.values for row in rows)


def pick_metric(rows, wanted=""):
    """The summary value that ranks rows: wanted if set, else the first one ("" if there is none).

    ConfigurationError names the known values when wanted is not one of them.
    """
    names = value_names(rows)
    if wanted:
        if wanted not in names:
            raise ConfigurationError(
                "no element's result has a value named %r: the results have %s"
                % (
                    wanted,
                    ", ".join(names) if names else "no numeric summary (they are not numbers or dicts of numbers)",
                )
            )
        return wanted
    return names[0] if names else ""


def ranked(rows, metric, descending=True):
    """Rows best first on metric; done rows without it next, then the rest by state (failed first)."""
    return [row for row, _ in scored(rows, metric, descending)]


def scored(rows, metric, descending=True):
    """(row, metric value or None) pairs, ordered as ranked() orders rows: each value computed once."""
    sign = -1.0 if descending else 1.0

    def order(pair):
        row, value = pair
        if value is not None and row.state == ElementState.DONE:
            return (0, 0, sign * value, row.index)
        return (1, _STATE_ORDER.get(row.state, 9), 0.0, row.index)

    return sorted(((row, row.value(metric) if metric else None) for row in rows), key=order)


def column_names(rows):
    """(parameter columns, summary columns as (column, value name)): a value named like a parameter becomes
    result.<name>."""
    params, values, _ = table_columns(rows)
    return params, values


def table_columns(rows, own=()):
    """(parameter columns, summary columns as (column, value name), columns of own), every one unique, so a
    csv.DictReader loses nothing: parameters keep their names; a summary value named like one becomes
    result.<name>; a column of the tool's own (own: "state", "duration"...) named like either becomes
    element.<name>; a name still taken gets a number (result.x.2)."""
    taken = set()

    def claim(name, prefix):
        column = prefix + name if name in taken else name
        number = 2
        while column in taken:
            column, number = "%s%s.%d" % (prefix, name, number), number + 1
        taken.add(column)
        return column

    params = [claim(name, "") for name in param_names(rows)]  # dict keys: unique, kept as they are
    values = [(claim(name, "result."), name) for name in value_names(rows)]
    return params, values, [claim(name, "element.") for name in own]


def record(row, columns=None):
    """A row as one dict: its parameters, then its summary values (named as column_names says)."""
    params, values = columns or ([*row.params], [("result.%s" % n if n in row.params else n, n) for n in row.values])
    out = {name: row.params[name] for name in params if name in row.params}
    out.update((column, row.values[name]) for column, name in values if name in row.values)
    for name in COST_COLUMNS:  # the element's own cost, after its values (element.<name> if a value took it)
        out["element." + name if name in out else name] = getattr(row.usage, name) if row.usage else None
    return out


# What records() adds of an element's cost: all its attempts' resources times their running times.
COST_COLUMNS = ("cpu_hours", "gb_hours", "gpu_hours", "cost")


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A value as a CSV cell a spreadsheet never evaluates: parameters, names and (forged) summaries come from
    the unsigned bucket, so text starting like a formula (=HYPERLINK(...), =cmd|...) gets a leading
    single quote, as OWASP advises; numbers stay numbers (a negative one is no formula)."""
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
