"""Charts of a job's attempts, as inline SVG for the status page: how long they took and how many ran at once.

Their size stays fixed at any job size: the histogram has at most 24 bins, the timeline one column per pixel.
"""

import datetime
import math

from ..bucket.records import FAILED, Outcome, outcome_of
from .durations import format_duration

_SUCCEEDED, _FAILED = ("#43a047", "succeeded"), ("#e53935", "failed")  # bar colour, what it counts


def attempt_charts(state, running, now):
    """Durations of finished attempts (succeeded and failed) and how many ran at each moment."""
    records = state.records.values()
    ok = [r["duration"] for r in records if outcome_of(r) is Outcome.SUCCESS and r.get("duration") is not None]
    bad = [r["duration"] for r in records if outcome_of(r) in FAILED and r.get("duration") is not None]
    intervals = [(r.get("started"), r.get("finished")) for r in records if r.get("started")]
    intervals += [(started, None) for _, started in (running or {}).values()]
    return (
        '<div class="charts"><div class="chart"><h2>Durations</h2>%s</div><div class="chart"><h2>Attempts '
        "running over time</h2>%s</div></div>" % (histogram_svg(ok, bad), timeline_svg(intervals, now))
    )


def _y_axis(top, left, plot_w, bottom, plot_h):
    """Grid lines and labels of a count axis from 0 to top, at round steps."""
    parts = []
    tick = max(1, int(_nice_step(top, 4)))
    for y_value in range(0, top + 1, tick):
        y = bottom - plot_h * y_value / top
        parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>' % (left, left + plot_w, y, y))
        parts.append(
            '<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#616161">%d</text>'
            % (left - 6, y + 4, y_value)
        )
    return parts


def _nice_step(span, count):
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _histogram_bins(durations, failed_durations, bins):
    """(step, successful counts, failed counts): round bin edges (0.5s, 1s, 2s, ...), a multiple of 4 bins."""
    values = list(durations) + list(failed_durations)
    step = _nice_step(max(values) or 1.0, bins)
    bins = max(4, min(bins, int(math.ceil(max(values) / step + 1e-9)) or 1))
    bins += (4 - bins % 4) % 4  # ticks every quarter fall on bin edges
    ok, bad = [0] * bins, [0] * bins
    for series, values_ in ((ok, durations), (bad, failed_durations)):
        for v in values_:
            series[min(int(v / step), bins - 1)] += 1
    return step, ok, bad


def histogram_svg(durations, failed_durations=(), width=560, height=220, bins=24):
    """Bars of attempt durations: successful (green) stacked under failed (red)."""
    if not list(durations) + list(failed_durations):
        return (
            '<svg class="histogram" width="%d" height="60"><text x="10" y="35" fill="#757575">'
            "no finished attempts yet</text></svg>" % width
        )
    step, ok, bad = _histogram_bins(durations, failed_durations, bins)
    bins = len(ok)
    top = max(a + b for a, b in zip(ok, bad)) or 1
    left, bottom, plot_w, plot_h = 44, height - 34, width - 60, height - 54
    parts = ['<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">' % (width, height)]
    parts += _y_axis(top, left, plot_w, bottom, plot_h)
    bar_w = plot_w / bins
    for i in range(bins):
        x = left + i * bar_w
        for count, base, (colour, what) in ((ok[i], 0, _SUCCEEDED), (bad[i], ok[i], _FAILED)):
            if count:
                h, y = plot_h * count / top, bottom - plot_h * (base + count) / top
                parts.append(
                    '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%d %s, %s to %s'
                    "</title></rect>"
                    % (
                        x + 1,
                        y,
                        max(bar_w - 2, 1),
                        h,
                        colour,
                        count,
                        what,
                        format_duration(i * step),
                        format_duration((i + 1) * step),
                    )
                )
    parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#9e9e9e"/>' % (left, left + plot_w, bottom, bottom))
    for i in range(0, bins + 1, bins // 4):
        anchor = "start" if i == 0 else "end" if i == bins else "middle"
        parts.append(
            '<text x="%.1f" y="%d" font-size="11" text-anchor="%s" fill="#616161">%s</text>'
            % (left + i * bar_w, bottom + 16, anchor, format_duration(i * step))
        )
    parts.append(
        '<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#424242">attempt duration</text>'
        % (left + plot_w / 2, height - 2)
    )
    for i, (colour, what) in enumerate((_SUCCEEDED, _FAILED)):
        x = left + plot_w - 150 + 80 * i
        parts.append(
            '<rect x="%d" y="2" width="10" height="10" fill="%s"/><text x="%d" y="11" font-size="11" '
            'fill="#424242">%s</text>' % (x, colour, x + 14, what)
        )
    parts.append("</svg>")
    return "".join(parts)


def _running_levels(events, start, end, plot_w):
    """Per pixel column, the most attempts running in it, and the peak: events are (moment, +1 or -1), sorted."""
    highs, ends, level, peak = [None] * plot_w, [0] * plot_w, 0, 1
    for moment, change in events:
        column = min(int(plot_w * (moment - start) / (end - start)), plot_w - 1)
        before, level = level, level + change
        highs[column] = max(highs[column] if highs[column] is not None else before, level)
        ends[column] = level
        peak = max(peak, level)
    values, level = [], 0
    for column in range(plot_w):
        values.append(highs[column] if highs[column] is not None else level)
        level = ends[column] if highs[column] is not None else level
    return values, peak


def timeline_svg(intervals, now, width=560, height=220):
    """How many attempts ran at each moment: a step area from (start, end) wall times."""
    intervals = [(s, e if e else now) for s, e in intervals if s]
    if not intervals:
        return (
            '<svg class="timeline" width="%d" height="60"><text x="10" y="35" fill="#757575">'
            "no attempts yet</text></svg>" % width
        )
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    start, end = events[0][0], max(events[-1][0], events[0][0] + 1.0)
    left, bottom, plot_w, plot_h = 44, height - 34, width - 60, height - 54
    # One column per pixel, drawn at the most attempts seen in it: the size stays fixed at any job size.
    values, peak = _running_levels(events, start, end, plot_w)
    path = " ".join(
        "%d,%.1f %d,%.1f"
        % (left + column, bottom - plot_h * value / peak, left + column + 1, bottom - plot_h * value / peak)
        for column, value in enumerate(values)
    )
    x_end = left + plot_w
    parts = ['<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">' % (width, height)]
    parts += _y_axis(peak, left, plot_w, bottom, plot_h)
    parts.append(
        '<polygon points="%.1f,%d %s %.1f,%d" fill="#90caf9" stroke="#1565c0" stroke-width="1.5">'
        "<title>peak %d attempts at once</title></polygon>" % (left, bottom, path, x_end, bottom, peak)
    )
    parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#9e9e9e"/>' % (left, left + plot_w, bottom, bottom))
    for i in range(5):
        moment = start + (end - start) * i / 4
        label = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%H:%M:%S")
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            '<text x="%.1f" y="%d" font-size="11" text-anchor="%s" fill="#616161">%s</text>'
            % (left + plot_w * i / 4, bottom + 16, anchor, label)
        )
    parts.append(
        '<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#424242">attempts running '
        "(UTC, %s in all)</text>" % (left + plot_w / 2, height - 2, format_duration(end - start))
    )
    parts.append("</svg>")
    return "".join(parts)
