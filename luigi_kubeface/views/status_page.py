"""A job's status page: one self-contained HTML file (inline CSS and SVG) next to its blobs.

It is written to `<job>/status.html` (status_writer.py) and refreshed while the job runs, so it opens from the Cloud
console or as a local file with no network and no server. Links to logs are relative, so they
resolve wherever the job's prefix is browsed. This module lays the page out and draws its cost and elements
tables; page_head.py draws the top, results_section.py the Results, attempt_charts.py the attempts' charts.
"""

import time

from .. import cost
from ..bucket import layout as naming
from .attempt_charts import attempt_charts
from .durations import format_duration
from .markup import escape
from .page_head import STATE_COLOURS, last_run, page_head
from .results_section import results_section
from .states import ElementState

TABLE_LIMIT = 500  # rows shown; failed, running and slowest first

_ORDER = {
    ElementState.FAILED: 0,
    ElementState.RUNNING: 1,
    ElementState.UNFINISHED: 2,
    ElementState.CANCELLED: 3,
    ElementState.DONE: 4,
    ElementState.PENDING: 5,
    ElementState.NOT_RUN: 5,
}


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
            links.append(
                '<a href="%s" title="%s: %s">#%s</a>'
                % (escape(naming.log_key(element.key, attempt)), escape(attempt), escape(outcome), escape(number))
            )
    return " ".join(links)


def _row(element):
    error = ""
    if element.error:
        record = element.last_record or {}
        earlier = (
            "attempt %d: " % len(element.records) if element.state == ElementState.RUNNING else ""
        )  # being retried
        error = '<div class="err">%s%s</div>' % (earlier, escape(element.error))
        if record.get("traceback"):
            error += "<details><summary>remote traceback</summary><pre>%s</pre></details>" % escape(record["traceback"])
    return (
        '<tr class="element %s"><td class="num">%d</td><td><code title="%s">%s</code></td><td>%s%s</td>'
        '<td><span class="state" style="background:%s">%s</span></td><td class="num">%d</td><td>%s</td>'
        '<td class="num">%s</td><td>%s</td></tr>'
        % (
            escape(element.state.replace(" ", "-")),
            element.index,
            escape(element.key),
            escape(element.key[:10]),
            escape(element.label),
            error,
            STATE_COLOURS.get(element.state, "#9e9e9e"),
            escape(element.state),
            len(element.attempts),
            escape(element.host),
            escape(format_duration(element.duration)),
            _attempt_links(element)
            + ('<div class="note">%s</div>' % escape(element.placement) if element.placement else ""),
        )
    )


def _cost(ledger):
    """What the job's attempts used (all runs), per category: requests x running time, priced if set."""
    rows = cost.breakdown(ledger)
    if len(rows) == 1:
        return ""
    priced = rows[-1][1].cost > 0
    cells = "".join(
        '<tr><td>%s</td><td class="num">%d</td><td class="num">%s</td><td class="num">%.4g</td>'
        '<td class="num">%.4g</td><td class="num">%.4g</td>%s</tr>'
        % (
            name,
            u.attempts,
            format_duration(u.seconds),
            u.cpu_hours,
            u.gb_hours,
            u.gpu_hours,
            '<td class="num">%.4g</td>' % u.cost if priced else "",
        )
        for name, u in rows
    )
    return (
        '<h2>Cost</h2><div class="note">resources requested x running time, all runs</div><table id="cost">'
        "<thead><tr><th>work</th><th>attempts</th><th>time</th><th>core-h</th><th>GB-h</th><th>GPU-h</th>%s</tr>"
        "</thead><tbody>%s</tbody></table>" % ("<th>cost</th>" if priced else "", cells)
    )


def _skipped(state):
    """Notes on records not read yet (over max_reads) and on those that could not be read."""
    parts = []
    if state.unread:
        parts.append(
            '<div class="note">%d older attempt records not read yet: charts show the newest</div>' % state.unread
        )
    if state.unreadable:
        skipped = sorted(state.unreadable.items())
        parts.append(
            '<div class="err" id="unreadable">%d records could not be read and were skipped:<br>%s%s</div>'
            % (
                len(skipped),
                "<br>".join(escape(why) for _, why in skipped[:10]),
                "<br>... and %d more" % (len(skipped) - 10) if len(skipped) > 10 else "",
            )
        )
    return parts


def render(state, progress=None, final=True, now=None, limit=TABLE_LIMIT):
    """The page's HTML from a refreshed JobState and, while the job runs, the engine's Progress.

    Pure: it reads nothing and writes nothing (status_writer.py writes the page).
    """
    now = now or time.time()
    running = dict(progress.running_attempts) if progress is not None and not final else None
    elements = state.elements(running)
    head, body = page_head(state, progress, final, now, elements, state.counts(elements))
    body += last_run(state.last_dispatch)
    body.append(_cost(state.cost(progress if not final else None)))
    body.append(results_section(state, elements))
    body.append(attempt_charts(state, running, now))
    body += _skipped(state)
    rows = sorted(elements, key=_row_order)
    body.append("<h2>Elements</h2>")
    if len(rows) > limit:
        body.append(
            '<div class="note">showing %d of %d elements: failed, running and slowest first '
            "(<code>kubeface status %s</code> lists them all)</div>" % (limit, len(rows), escape(state.store.id))
        )
    body.append(
        '<table id="elements"><thead><tr><th>#</th><th>key</th><th>parameters</th><th>state</th>'
        "<th>attempts</th><th>node</th><th>duration</th><th>logs</th></tr></thead><tbody>"
    )
    body.extend(_row(e) for e in rows[:limit])
    body.append("</tbody></table></body></html>")
    return "".join(head + body)


def page_url(job):
    """Where a browser opens the page, as the job's storage says: a file:// URL, a bucket's console."""
    return job.storage.browse_url(naming.STATUS_PAGE)
