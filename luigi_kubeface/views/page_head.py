"""The top of the status page: its <head> (title, refresh, inline CSS), then the job line, the counts, the
state bar and the last run; and the states' colours, which the elements table shares."""

import datetime

from .markup import escape
from .states import ElementState

REFRESH_SECONDS = 15.0

STATE_COLOURS = {
    ElementState.DONE: "#2e7d32",
    ElementState.FAILED: "#c62828",
    ElementState.RUNNING: "#1565c0",
    ElementState.CANCELLED: "#8d6e63",
    ElementState.UNFINISHED: "#ef6c00",
    ElementState.PENDING: "#9e9e9e",
    ElementState.NOT_RUN: "#9e9e9e",
}

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


def utc_moment(seconds):
    """A moment to the second, "UTC" said, for the page's prose ("": not known)."""
    if not seconds:
        return ""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown_counts(progress, counts, elements):
    """(name, count) boxes and the share done: the engine's live counts while it runs, else storage's."""
    if progress is not None:
        shown = [
            ("elements", progress.total),
            ("reused", progress.reused),
            ("succeeded", progress.succeeded),
            ("running", progress.running),
            ("pending", progress.pending + progress.starting),
            ("failed", progress.failed),
            ("retried", progress.retried),
            ("speculated", progress.speculated),
        ]
        return shown, (progress.reused + progress.succeeded) / max(progress.total, 1)
    shown = [
        (name, counts.get(name, 0))
        for name in (
            "elements",
            ElementState.DONE,
            ElementState.FAILED,
            ElementState.CANCELLED,
            ElementState.UNFINISHED,
            ElementState.NOT_RUN,
        )
    ] + [("attempts", counts["attempts"])]
    return shown, counts.get(ElementState.DONE, 0) / max(len(elements), 1)


def _state_bar(counts, elements):
    """The bar of elements by state, a segment per state that has any."""
    total = max(len(elements), 1)
    return "".join(
        '<div style="width:%.3f%%;background:%s" title="%d %s"></div>'
        % (100.0 * counts.get(s, 0) / total, STATE_COLOURS[s], counts.get(s, 0), s)
        for s in (
            ElementState.DONE,
            ElementState.RUNNING,
            ElementState.UNFINISHED,
            ElementState.FAILED,
            ElementState.CANCELLED,
        )
        if counts.get(s)
    )


def page_head(state, progress, final, now, elements, counts):
    """The title, job line, counts and bar: the engine's live counts while it runs, else storage's."""
    job, meta = state.store, state.meta
    shown, done_share = _shown_counts(progress, counts, elements)
    head = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="refresh" content="%d">' % REFRESH_SECONDS if not final else "",
        "<title>%s %s: kubeface job %s</title>"
        % ("%.0f%%" % (100 * done_share), "running" if not final else "", escape(job.id)),
        "<style>%s</style></head><body>" % _CSS,
    ]
    body = [
        "<h1>Job %s</h1>" % escape(job.id),
        '<div class="sub">%s &middot; function <code>%s</code> &middot; Python %s, cloudpickle %s &middot; '
        "%s at %s</div>"
        % (
            escape(job.url),
            escape(meta.get("function", "?")),
            escape(meta.get("python", "?")),
            escape(meta.get("cloudpickle", "?")),
            "running, updated" if not final else "page written",
            utc_moment(now),
        ),
        '<div class="counts">%s</div>'
        % "".join(
            '<div class="count" id="count-%s"><b>%d</b><span>%s</span></div>' % (name.replace(" ", "-"), value, name)
            for name, value in shown
        ),
        '<div class="bar">%s</div><div class="note">%.0f%% done</div>'
        % (_state_bar(counts, elements), 100 * done_share),
    ]
    return head, body


def last_run(summary):
    """The last run's times, stop reason and distinct errors."""
    if not summary:
        return []
    parts = [
        '<div class="note">last run %s: %s to %s%s</div>'
        % (
            escape(summary.run),
            utc_moment(summary.started),
            utc_moment(summary.finished),
            ("; stopped early: " + escape(summary.stopped)) if summary.stopped else "",
        )
    ]
    if summary.errors:
        parts.append('<div class="err">%s</div>' % "<br>".join(escape(e) for e in summary.errors))
    return parts
