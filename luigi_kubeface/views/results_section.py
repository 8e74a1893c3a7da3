"""The status page's Results section: the best elements on the job's metric, then charts of it per parameter.

Its own module: what ranks the results (result_table.py) and draws them (result_charts.py) is shared with
`kubeface results`; this is the HTML the page shows of them.
"""

from .durations import format_duration
from .markup import escape
from .result_charts import MetricScale, not_charted, parallel_svg, slice_svg
from .result_table import param_names, result_rows, scored, table_columns, value_names
from .states import ElementState

RESULTS_LIMIT = 50  # rows of the Results table: the best ones


def _value_cell(value):
    return "%.6g" % value if isinstance(value, float) else "" if value is None else str(value)


def _nothing_to_rank(rows, notes):
    """The section when no element has a numeric summary: what they returned instead, if anything."""
    kinds = sorted({r.result_type for r in rows if r.result_type})
    return (
        '<h2>Results</h2><div class="note" id="results">%s</div>'
        % (
            "no numeric results to compare: the elements returned %s (a number, or a dict or list of at most 32 "
            "numbers, is summarised)" % escape(", ".join(kinds))
            if kinds
            else "no results with a summary yet"
        )
    ) + notes


def _results_table(best, params, names, metric, own, columns, limit):
    """The table of the best rows: rank, element, parameters, summary values (the metric's in bold), duration."""
    out = [
        '<table id="results"><thead><tr><th>%s</th><th>%s</th>%s%s<th>%s</th></tr></thead><tbody>'
        % (
            escape(own[0]),
            escape(own[1]),
            "".join("<th>%s</th>" % escape(p) for p in params),
            "".join("<th>%s</th>" % escape(column) for column, _ in columns),
            escape(own[2]),
        )
    ]
    for rank, (row, _) in enumerate(best[:limit], 1):
        out.append(
            '<tr class="result"><td class="num">%d</td><td class="num">%d</td>%s%s<td class="num">%s</td></tr>'
            % (
                rank,
                row.index,
                "".join("<td>%s</td>" % escape(_value_cell(row.params.get(p))) for p in params),
                "".join(
                    '<td class="num%s">%s</td>'
                    % (" metric" if n == metric else "", escape(_value_cell(row.values.get(n))))
                    for n in names
                ),
                escape(format_duration(row.duration)),
            )
        )
    out.append("</tbody></table>")
    return out


def results_section(state, elements, limit=RESULTS_LIMIT):
    """The Results section: the best elements on the metric, then charts of it against each parameter.

    The metric and its direction are the map task's (result_metric, result_direction in job.json),
    else the first summary value, highest best. Built from the records read so far, never from results.
    """
    rows = result_rows(e for e in elements if e.state == ElementState.DONE)
    names = value_names(rows)
    notes = "".join('<div class="note err refused">%s</div>' % escape(n) for n in state.summary_notes())
    if not names:
        return _nothing_to_rank(rows, notes)
    wanted = state.meta.get("result_metric") or ""
    metric = wanted if wanted in names else names[0]
    descending = state.meta.get("result_direction") != "minimize"
    best = [(r, v) for r, v in scored(rows, metric, descending) if v is not None]
    params = [p for p in param_names(rows) if p != "parameters"] or ["parameters"]
    _, columns, own = table_columns(rows, ("rank", "#", "duration"))  # headers as `kubeface results` names them
    out = [
        '<h2>Results</h2><div class="note">%d result(s) with a value of <b>%s</b>, %s first%s%s</div>'
        % (
            len(best),
            escape(metric),
            "highest" if descending else "lowest",
            "" if not wanted or wanted == metric else " (result_metric %s is in no summary)" % escape(wanted),
            "; %d attempt records not read yet" % state.unread if state.unread else "",
        ),
        notes,
    ]
    out += _results_table(best, params, names, metric, own, columns, limit)
    if len(best) > limit:
        out.append(
            '<div class="note">the best %d of %d: <code>kubeface results %s</code> lists them all</div>'
            % (limit, len(best), escape(state.store.id))
        )
    if best:
        out.append(_result_charts(params, best, metric, MetricScale([v for _, v in best], descending)))
    return "".join(out)


def _result_charts(params, best, metric, scale):
    """A slice chart per parameter and the parallel coordinates of them; a parameter no chart can label
    (result_charts.not_charted) gets one line saying why instead, and its column in the table above."""
    why = {p: not_charted([r.params.get(p) for r, _ in best]) for p in params}
    charted = [p for p in params if not why[p]]
    out = [
        '<div class="note not-charted" data-param="%s">%s: %s</div>' % (escape(p), escape(p), escape(why[p]))
        for p in params
        if why[p]
    ]
    charts = [slice_svg(p, [(r.params[p], v) for r, v in best if p in r.params], metric, scale) for p in charted]
    if charts:
        out.append('<div class="charts">%s</div>' % "".join('<div class="chart">%s</div>' % c for c in charts))
    if len(charted) >= 2:
        out.append(
            '<div class="chart" style="display:inline-block">%s</div>'
            % parallel_svg(charted, [(r.params, v) for r, v in best], metric, scale, width=max(600, 160 * len(charted)))
        )
    return "".join(out)
