"""`kubeface results`: one row per element, ranked, as a table, CSV or JSON."""

import csv
import json

from ..views.result_table import csv_cell, pick_metric, ranked, result_rows, table_columns
from ..views.durations import format_duration
from .common import job_state, warn


def _cell(value):
    if isinstance(value, float):
        return "%.6g" % value
    return "" if value is None else str(value)


def _order(args, state, rows):
    """(metric, descending): --sort, else the map task's result_metric if a summary has it, else the first;
    highest first unless --ascending or the map task said lowest is best."""
    recorded = state.meta.get("result_metric") or ""
    metric = pick_metric(rows, args.sort or (recorded if recorded in {n for r in rows for n in r.values} else ""))
    descending = not args.ascending
    if not args.sort and state.meta.get("result_direction") == "minimize":
        descending = args.ascending  # the map task said lowest is best: --ascending has nothing to flip
    return metric, descending


def _write_json(rows, out):
    json.dump(
        [
            {
                "index": r.index,
                "element": r.key,
                "params": r.params,
                "summary": r.values,
                "state": r.state,
                "duration": r.duration,
                "code_version": r.code_version,
                "result_type": r.result_type,
                "error": r.error,
            }
            for r in rows
        ],
        out,
        indent=1,
    )
    out.write("\n")


def _print_text(state, header, table, params, heading, out):
    """The table in aligned columns under a line saying what it shows, numbers right-aligned."""
    text = [[_cell(v) for v in line[:-2]] + [format_duration(line[-2]), (line[-1] or "")[:12]] for line in table]
    widths = [min(30, max([len(h)] + [len(line[i]) for line in text])) for i, h in enumerate(header)]
    numeric = [i == 0 or i > len(params) and i < len(header) - 3 or i == len(header) - 2 for i in range(len(header))]
    print(heading, file=out)
    for line in [header] + text:
        print(
            "  ".join(
                (cell[:w].rjust(w) if right else cell[:w].ljust(w)) for cell, w, right in zip(line, widths, numeric)
            ).rstrip(),
            file=out,
        )
    if state.unread:
        print("(%d attempt records not read: raise --max-reads)" % state.unread, file=out)


def cmd_results(args, out):
    state = job_state(args)
    rows = result_rows(state.elements(state.live_running()))
    metric, descending = _order(args, state, rows)
    total = len(rows)
    rows = ranked(rows, metric, descending)[: args.top if args.top else None]
    params, values, own = table_columns(rows, ("#", "state", "duration", "code_version"))
    for note in state.summary_notes():  # on stderr: csv and json stay parseable
        warn(note)
    if args.format == "json":
        _write_json(rows, out)
        return 0
    header = own[:1] + params + [column for column, _ in values] + own[1:]  # unique: a parameter keeps its name
    table = [
        [str(r.index)]
        + [r.params.get(name) for name in params]
        + [r.values.get(name) for _, name in values]
        + [r.state, r.duration, r.code_version]
        for r in rows
    ]
    if args.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([csv_cell(v) for v in header])
        writer.writerows([[csv_cell(v) for v in line] for line in table])
        return 0
    heading = "job %s: %d elements%s, %s" % (
        state.job.id,
        total,
        "" if len(rows) == total else " (the first %d)" % len(rows),
        "best first on %s (%s)" % (metric, "highest first" if descending else "lowest first")
        if metric
        else "no numeric results",
    )
    _print_text(state, header, table, params, heading, out)
    return 0
