"""A job's status page: one self-contained HTML file (inline CSS and SVG) next to its blobs.

It is written to `<job>/status.html` (status_writer.py) and refreshed while the job runs, so it opens from the Cloud
console or as a local file with no network and no server. Links to logs are relative, so they
resolve wherever the job's prefix is browsed.
"""

import datetime
import math
import time

from .. import cost
from ..bucket import layout as naming
from ..bucket.records import FAILED, Outcome, outcome_of
from .markup import escape
from .states import ElementState
from .result_charts import MetricScale, not_charted, parallel_svg, slice_svg
from .result_table import param_names, result_rows, scored, table_columns, value_names

TABLE_LIMIT = 500  # rows shown; failed, running and slowest first
RESULTS_LIMIT = 50  # rows of the Results table: the best ones
REFRESH_SECONDS = 15.0

_COLOURS = {ElementState.DONE: "#2e7d32", ElementState.FAILED: "#c62828", ElementState.RUNNING: "#1565c0",
            ElementState.CANCELLED: "#8d6e63", ElementState.UNFINISHED: "#ef6c00", ElementState.PENDING: "#9e9e9e",
            ElementState.NOT_RUN: "#9e9e9e"}
_ORDER = {ElementState.FAILED: 0, ElementState.RUNNING: 1, ElementState.UNFINISHED: 2, ElementState.CANCELLED: 3,
          ElementState.DONE: 4, ElementState.PENDING: 5, ElementState.NOT_RUN: 5}

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#212121;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.sub{color:#616161;margin-bottom:12px} code{font:12px ui-monospace,Menlo,Consolas,monospace}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}
.count{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:6px 12px;min-width:70px}
.count b{display:block;font-size:20px} .count span{color:#616161;font-size:12px}
.bar{display:flex;height:14px;border-radius:7px;overflow:hidden;background:#eee;margin:8px 0 4px;max-width:900px}
.bar div{height:100%}
.charts{display:flex;flex-wrap:wrap;gap:24px}
.chart{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:8px}
table{border-collapse:collapse;background:#fff;border:1px solid #e0e0e0;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f5f5f5;position:sticky;top:0} td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:0 8px;border-radius:9px;color:#fff;font-size:12px}
.err{color:#b71c1c;max-width:520px} details summary{cursor:pointer}
pre{white-space:pre-wrap;font:11px ui-monospace,Menlo,Consolas,monospace;background:#fbe9e7;padding:6px;max-width:700px}
.note{color:#616161;font-size:12px}
#results{margin-bottom:12px} td.metric{font-weight:bold} .charts .chart svg{display:block}
"""


def _utc_moment(seconds):
    """A moment to the second, "UTC" said, for the page's prose ("": not known)."""
    if not seconds:
        return ""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds):
    if seconds is None:
        return ""
    if seconds < 60:
        return ("%.1fs" % seconds).replace(".0s", "s") if seconds >= 10 or seconds == int(seconds) else "%.1fs" % seconds
    if seconds < 3600:
        return "%dm%02ds" % divmod(int(seconds), 60)
    hours, rest = divmod(int(seconds), 3600)
    return "%dh%02dm" % (hours, rest // 60)


def _y_axis(top, left, plot_w, bottom, plot_h):
    """Grid lines and labels of a count axis from 0 to top, at round steps."""
    parts = []
    tick = max(1, int(_nice_step(top, 4)))
    for y_value in range(0, top + 1, tick):
        y = bottom - plot_h * y_value / top
        parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>' % (left, left + plot_w, y, y))
        parts.append('<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#616161">%d</text>'
                     % (left - 6, y + 4, y_value))
    return parts


def _nice_step(span, count):
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def histogram_svg(durations, failed_durations=(), width=560, height=220, bins=24):
    """Bars of attempt durations: successful (green) stacked under failed (red)."""
    values = list(durations) + list(failed_durations)
    if not values:
        return '<svg class="histogram" width="%d" height="60"><text x="10" y="35" fill="#757575">' \
               'no finished attempts yet</text></svg>' % width
    low = 0.0
    step = _nice_step(max(values) or 1.0, bins)  # round bin edges: 0.5s, 1s, 2s, ...
    bins = max(4, min(bins, int(math.ceil(max(values) / step + 1e-9)) or 1))
    bins += (4 - bins % 4) % 4  # ticks every quarter fall on bin edges
    ok, bad = [0] * bins, [0] * bins
    for series, values_ in ((ok, durations), (bad, failed_durations)):
        for v in values_:
            series[min(int((v - low) / step), bins - 1)] += 1
    top = max(a + b for a, b in zip(ok, bad)) or 1
    left, bottom, plot_w, plot_h = 44, height - 34, width - 60, height - 54
    parts = ['<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">' % (width, height)]
    parts += _y_axis(top, left, plot_w, bottom, plot_h)
    bar_w = plot_w / bins
    for i in range(bins):
        x = left + i * bar_w
        for count, base, colour, what in ((ok[i], 0, "#43a047", "succeeded"), (bad[i], ok[i], "#e53935", "failed")):
            if count:
                h, y = plot_h * count / top, bottom - plot_h * (base + count) / top
                parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%d %s, %s to %s'
                             '</title></rect>' % (x + 1, y, max(bar_w - 2, 1), h, colour, count, what,
                                                  format_duration(low + i * step), format_duration(low + (i + 1) * step)))
    parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#9e9e9e"/>' % (left, left + plot_w, bottom, bottom))
    for i in range(0, bins + 1, bins // 4):
        anchor = "start" if i == 0 else "end" if i == bins else "middle"
        parts.append('<text x="%.1f" y="%d" font-size="11" text-anchor="%s" fill="#616161">%s</text>'
                     % (left + i * bar_w, bottom + 16, anchor, format_duration(low + i * step)))
    parts.append('<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#424242">attempt duration</text>'
                 % (left + plot_w / 2, height - 2))
    for i, (colour, what) in enumerate((("#43a047", "succeeded"), ("#e53935", "failed"))):
        x = left + plot_w - 150 + 80 * i
        parts.append('<rect x="%d" y="2" width="10" height="10" fill="%s"/><text x="%d" y="11" font-size="11" '
                     'fill="#424242">%s</text>' % (x, colour, x + 14, what))
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(intervals, now, width=560, height=220):
    """How many attempts ran at each moment: a step area from (start, end) wall times."""
    intervals = [(s, e if e else now) for s, e in intervals if s]
    if not intervals:
        return '<svg class="timeline" width="%d" height="60"><text x="10" y="35" fill="#757575">' \
               'no attempts yet</text></svg>' % width
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    start, end = events[0][0], max(events[-1][0], events[0][0] + 1.0)
    left, bottom, plot_w, plot_h = 44, height - 34, width - 60, height - 54
    # One column per pixel, drawn at the most attempts seen in it: the size stays fixed at any job size.
    highs, ends, level, peak = [None] * plot_w, [0] * plot_w, 0, 1
    for moment, change in events:
        column = min(int(plot_w * (moment - start) / (end - start)), plot_w - 1)
        before, level = level, level + change
        highs[column] = max(highs[column] if highs[column] is not None else before, level)
        ends[column] = level
        peak = max(peak, level)
    points, level = [], 0
    for column in range(plot_w):
        value = highs[column] if highs[column] is not None else level
        level = ends[column] if highs[column] is not None else level
        y = bottom - plot_h * value / peak
        points.append("%d,%.1f %d,%.1f" % (left + column, y, left + column + 1, y))
    path = " ".join(points)
    x_end = left + plot_w
    parts = ['<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">' % (width, height)]
    parts += _y_axis(peak, left, plot_w, bottom, plot_h)
    parts.append('<polygon points="%.1f,%d %s %.1f,%d" fill="#90caf9" stroke="#1565c0" stroke-width="1.5">'
                 '<title>peak %d attempts at once</title></polygon>' % (left, bottom, path, x_end, bottom, peak))
    parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#9e9e9e"/>' % (left, left + plot_w, bottom, bottom))
    for i in range(5):
        moment = start + (end - start) * i / 4
        label = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%H:%M:%S")
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append('<text x="%.1f" y="%d" font-size="11" text-anchor="%s" fill="#616161">%s</text>'
                     % (left + plot_w * i / 4, bottom + 16, anchor, label))
    parts.append('<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#424242">attempts running '
                 '(UTC, %s in all)</text>' % (left + plot_w / 2, height - 2, format_duration(end - start)))
    parts.append("</svg>")
    return "".join(parts)


def _row_order(element):
    duration = element.duration or 0.0
    return (_ORDER.get(element.state, 9), -duration, element.index)


def _attempt_links(element):
    links = []
    for number, attempt in naming.numbered_attempts(element.attempts):  # as `kubeface logs --attempt N` counts
        record = element.records.get(attempt)
        outcome = record.get("outcome", "") if record else ("running" if element.state == ElementState.RUNNING else "")
        if record and record.get("memory_limit"):
            outcome += ", memory %s" % record["memory_limit"]
        if record and isinstance(record.get("spot"), bool):
            outcome += ", on spot" if record["spot"] else ", off spot"
        if record is None or record.get("recorded_by") == "master":  # no log in storage (yet)
            links.append('<span title="%s %s">#%s</span>' % (escape(attempt), escape(outcome), escape(number)))
        else:
            links.append('<a href="%s" title="%s: %s">#%s</a>'
                         % (escape(naming.log_key(element.key, attempt)), escape(attempt), escape(outcome), escape(number)))
    return " ".join(links)


def _row(element):
    error = ""
    if element.error:
        record = element.last_record or {}
        earlier = "attempt %d: " % len(element.records) if element.state == ElementState.RUNNING else ""  # being retried
        error = '<div class="err">%s%s</div>' % (earlier, escape(element.error))
        if record.get("traceback"):
            error += "<details><summary>remote traceback</summary><pre>%s</pre></details>" % escape(record["traceback"])
    return ("<tr class=\"element %s\"><td class=\"num\">%d</td><td><code title=\"%s\">%s</code></td><td>%s%s</td>"
            "<td><span class=\"state\" style=\"background:%s\">%s</span></td><td class=\"num\">%d</td><td>%s</td>"
            "<td class=\"num\">%s</td><td>%s</td></tr>"
            % (escape(element.state.replace(" ", "-")), element.index, escape(element.key), escape(element.key[:10]),
               escape(element.label), error, _COLOURS.get(element.state, "#9e9e9e"), escape(element.state),
               len(element.attempts), escape(element.host), escape(format_duration(element.duration)),
               _attempt_links(element) + ('<div class="note">%s</div>' % escape(element.placement)
                                          if element.placement else "")))


def _value_cell(value):
    return "%.6g" % value if isinstance(value, float) else "" if value is None else str(value)


def results_section(state, elements, limit=RESULTS_LIMIT):
    """The Results section: the best elements on the metric, then charts of it against each parameter.

    The metric and its direction are the map task's (result_metric, result_direction in job.json),
    else the first summary value, highest best. Built from the records read so far, never from results.
    """
    rows = result_rows(e for e in elements if e.state == ElementState.DONE)
    names = value_names(rows)
    notes = "".join('<div class="note err refused">%s</div>' % escape(n) for n in state.summary_notes())
    if not names:
        kinds = sorted({r.result_type for r in rows if r.result_type})
        return ('<h2>Results</h2><div class="note" id="results">%s</div>' % (
            "no numeric results to compare: the elements returned %s (a number, or a dict or list of at most 32 "
            "numbers, is summarised)" % escape(", ".join(kinds)) if kinds else "no results with a summary yet")) + notes
    wanted = state.meta.get("result_metric") or ""
    metric = wanted if wanted in names else names[0]
    descending = state.meta.get("result_direction") != "minimize"
    best = [(r, v) for r, v in scored(rows, metric, descending) if v is not None]
    params = [p for p in param_names(rows) if p != "parameters"] or ["parameters"]
    _, columns, own = table_columns(rows, ("rank", "#", "duration"))  # headers as `kubeface results` names them
    out = ['<h2>Results</h2><div class="note">%d result(s) with a value of <b>%s</b>, %s first%s%s</div>' % (
        len(best), escape(metric), "highest" if descending else "lowest",
        "" if not wanted or wanted == metric else " (result_metric %s is in no summary)" % escape(wanted),
        "; %d attempt records not read yet" % state.unread if state.unread else ""), notes]
    out.append('<table id="results"><thead><tr><th>%s</th><th>%s</th>%s%s<th>%s</th></tr></thead><tbody>' % (
        escape(own[0]), escape(own[1]), "".join("<th>%s</th>" % escape(p) for p in params),
        "".join("<th>%s</th>" % escape(column) for column, _ in columns), escape(own[2])))
    for rank, (row, _) in enumerate(best[:limit], 1):
        out.append('<tr class="result"><td class="num">%d</td><td class="num">%d</td>%s%s<td class="num">%s</td></tr>'
                   % (rank, row.index, "".join("<td>%s</td>" % escape(_value_cell(row.params.get(p))) for p in params),
                      "".join('<td class="num%s">%s</td>' % (" metric" if n == metric else "",
                                                             escape(_value_cell(row.values.get(n)))) for n in names),
                      escape(format_duration(row.duration))))
    out.append("</tbody></table>")
    if len(best) > limit:
        out.append('<div class="note">the best %d of %d: <code>kubeface results %s</code> lists them all</div>'
                   % (limit, len(best), escape(state.store.id)))
    if best:
        out.append(_result_charts(params, best, metric, MetricScale([v for _, v in best], descending)))
    return "".join(out)


def _result_charts(params, best, metric, scale):
    """A slice chart per parameter and the parallel coordinates of them; a parameter no chart can label
    (result_charts.not_charted) gets one line saying why instead, and its column in the table above."""
    why = {p: not_charted([r.params.get(p) for r, _ in best]) for p in params}
    charted = [p for p in params if not why[p]]
    out = ['<div class="note not-charted" data-param="%s">%s: %s</div>' % (escape(p), escape(p), escape(why[p]))
           for p in params if why[p]]
    charts = [slice_svg(p, [(r.params[p], v) for r, v in best if p in r.params], metric, scale) for p in charted]
    if charts:
        out.append('<div class="charts">%s</div>' % "".join('<div class="chart">%s</div>' % c for c in charts))
    if len(charted) >= 2:
        out.append('<div class="chart" style="display:inline-block">%s</div>' % parallel_svg(
            charted, [(r.params, v) for r, v in best], metric, scale, width=max(600, 160 * len(charted))))
    return "".join(out)


def _page_head(state, progress, final, now, elements, counts):
    """The title, job line, counts and bar: the engine's live counts while it runs, else storage's."""
    job, meta = state.store, state.meta
    if progress is not None:
        shown = [("elements", progress.total), ("reused", progress.reused), ("succeeded", progress.succeeded),
                 ("running", progress.running), ("pending", progress.pending + progress.starting),
                 ("failed", progress.failed),
                 ("retried", progress.retried), ("speculated", progress.speculated)]
        done_share = (progress.reused + progress.succeeded) / max(progress.total, 1)
    else:
        shown = [(name, counts.get(name, 0)) for name in ("elements", ElementState.DONE, ElementState.FAILED,
                                                         ElementState.CANCELLED, ElementState.UNFINISHED,
                                                         ElementState.NOT_RUN)] + [("attempts", counts["attempts"])]
        done_share = counts.get(ElementState.DONE, 0) / max(len(elements), 1)
    total = max(len(elements), 1)
    bar = "".join('<div style="width:%.3f%%;background:%s" title="%d %s"></div>'
                  % (100.0 * counts.get(s, 0) / total, _COLOURS[s], counts.get(s, 0), s)
                  for s in (ElementState.DONE, ElementState.RUNNING, ElementState.UNFINISHED, ElementState.FAILED,
                            ElementState.CANCELLED) if counts.get(s))
    head = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta http-equiv="refresh" content="%d">' % REFRESH_SECONDS if not final else "",
            "<title>%s %s: kubeface job %s</title>" % ("%.0f%%" % (100 * done_share), "running" if not final else "",
                                                       escape(job.id)),
            "<style>%s</style></head><body>" % _CSS]
    body = ["<h1>Job %s</h1>" % escape(job.id),
            '<div class="sub">%s &middot; function <code>%s</code> &middot; Python %s, cloudpickle %s &middot; '
            '%s at %s</div>' % (escape(job.url), escape(meta.get("function", "?")), escape(meta.get("python", "?")),
                                escape(meta.get("cloudpickle", "?")), "running, updated" if not final else "page written",
                                _utc_moment(now)),
            '<div class="counts">%s</div>' % "".join('<div class="count" id="count-%s"><b>%d</b><span>%s</span></div>'
                                                    % (name.replace(" ", "-"), value, name) for name, value in shown),
            '<div class="bar">%s</div><div class="note">%.0f%% done</div>' % (bar, 100 * done_share)]
    return head, body


def _last_run(summary):
    """The last run's times, stop reason and distinct errors."""
    if not summary:
        return []
    parts = ['<div class="note">last run %s: %s to %s%s</div>' % (
        escape(summary.run), _utc_moment(summary.started), _utc_moment(summary.finished),
        ("; stopped early: " + escape(summary.stopped)) if summary.stopped else "")]
    if summary.errors:
        parts.append('<div class="err">%s</div>' % "<br>".join(escape(e) for e in summary.errors))
    return parts


def _cost(ledger):
    """What the job's attempts used (all runs), per category: requests x running time, priced if set."""
    rows = cost.breakdown(ledger)
    if len(rows) == 1:
        return ""
    priced = rows[-1][1].cost > 0
    cells = "".join("<tr><td>%s</td><td class=\"num\">%d</td><td class=\"num\">%s</td><td class=\"num\">%.4g</td>"
                    "<td class=\"num\">%.4g</td><td class=\"num\">%.4g</td>%s</tr>"
                    % (name, u.attempts, format_duration(u.seconds), u.cpu_hours, u.gb_hours, u.gpu_hours,
                       '<td class="num">%.4g</td>' % u.cost if priced else "") for name, u in rows)
    return ('<h2>Cost</h2><div class="note">resources requested x running time, all runs</div><table id="cost">'
            "<thead><tr><th>work</th><th>attempts</th><th>time</th><th>core-h</th><th>GB-h</th><th>GPU-h</th>%s</tr>"
            "</thead><tbody>%s</tbody></table>" % ("<th>cost</th>" if priced else "", cells))


def _charts(state, running, now):
    """Durations of finished attempts (succeeded and failed) and how many ran at each moment."""
    records = state.records.values()
    ok = [r["duration"] for r in records if outcome_of(r) is Outcome.SUCCESS and r.get("duration") is not None]
    bad = [r["duration"] for r in records if outcome_of(r) in FAILED and r.get("duration") is not None]
    intervals = [(r.get("started"), r.get("finished")) for r in records if r.get("started")]
    intervals += [(started, None) for _, started in (running or {}).values()]
    return ('<div class="charts"><div class="chart"><h2>Durations</h2>%s</div><div class="chart"><h2>Attempts '
            'running over time</h2>%s</div></div>' % (histogram_svg(ok, bad), timeline_svg(intervals, now)))


def _skipped(state):
    """Notes on records not read yet (over max_reads) and on those that could not be read."""
    parts = []
    if state.unread:
        parts.append('<div class="note">%d older attempt records not read yet: charts show the newest</div>'
                     % state.unread)
    if state.unreadable:
        skipped = sorted(state.unreadable.items())
        parts.append('<div class="err" id="unreadable">%d records could not be read and were skipped:<br>%s%s</div>' % (
            len(skipped), "<br>".join(escape(why) for _, why in skipped[:10]),
            "<br>... and %d more" % (len(skipped) - 10) if len(skipped) > 10 else ""))
    return parts


def render(state, progress=None, final=True, now=None, limit=TABLE_LIMIT):
    """The page's HTML from a refreshed JobState and, while the job runs, the engine's Progress.

    Pure: it reads nothing and writes nothing (status_writer.py writes the page).
    """
    now = now or time.time()
    running = dict(progress.running_attempts) if progress is not None and not final else None
    elements = state.elements(running)
    head, body = _page_head(state, progress, final, now, elements, state.counts(elements))
    body += _last_run(state.last_dispatch)
    body.append(_cost(state.cost(progress if not final else None)))
    body.append(results_section(state, elements))
    body.append(_charts(state, running, now))
    body += _skipped(state)
    rows = sorted(elements, key=_row_order)
    body.append("<h2>Elements</h2>")
    if len(rows) > limit:
        body.append('<div class="note">showing %d of %d elements: failed, running and slowest first '
                    '(<code>kubeface status %s</code> lists them all)</div>' % (limit, len(rows), escape(state.store.id)))
    body.append('<table id="elements"><thead><tr><th>#</th><th>key</th><th>parameters</th><th>state</th>'
                "<th>attempts</th><th>node</th><th>duration</th><th>logs</th></tr></thead><tbody>")
    body.extend(_row(e) for e in rows[:limit])
    body.append("</tbody></table></body></html>")
    return "".join(head + body)


def page_url(job):
    """Where a browser opens the page, as the job's storage says: a file:// URL, a bucket's console."""
    return job.storage.browse_url(naming.STATUS_PAGE)
