"""Charts of a metric against parameters, as inline SVG for the status page's Results section.

A slice chart per parameter (the metric against that parameter's values, as Optuna draws it) and
a parallel-coordinates chart of every parameter and the metric. Their size does not grow with the
job: each parameter value (or, past MAX_GROUPS distinct numbers, each of MAX_GROUPS bins) is drawn
once as a range with its mean, and at most MAX_POINTS points and MAX_LINES lines are drawn, a
fixed sample that always keeps the best elements. Every text is escaped: it comes from the bucket.
"""

import math
import random
from collections import Counter

from .markup import escape

MAX_GROUPS = 40  # distinct values (or bins) per parameter axis
MAX_POINTS = 1500  # points per slice chart
MAX_LINES = 800  # lines in the parallel-coordinates chart
SHADES = 8  # colours from worst to best: points and lines are grouped by shade, to keep the page small
KEEP_BEST = 50  # always drawn, whatever the sample

_LOW, _HIGH = (198, 219, 239), (8, 48, 107)  # colour of the worst and the best value


def _fmt(value):
    if isinstance(value, float):
        return "%.4g" % value
    return str(value)


_INFINITIES = (float("inf"), float("-inf"))


def _is_number(value):
    return type(value) in (int, float) and value == value and value not in _INFINITIES


class Axis:
    """Where a parameter's values sit on [0, 1]: numbers on a linear or log scale, anything else in bands."""

    def __init__(self, values):
        values = [v for v in values if v is not None]
        self.numeric = bool(values) and all(_is_number(v) for v in values)
        if self.numeric:
            low, high = min(values), max(values)
            self.log = low > 0 and high / low >= 100
            self.low, self.high = (math.log10(low), math.log10(high)) if self.log else (low, high)
            self.distinct = sorted(set(values)) if len(set(values)) <= MAX_GROUPS else None
        else:
            counts = Counter(_fmt(v) for v in values)
            kept = [v for v, _ in counts.most_common(MAX_GROUPS - 1)] if len(counts) > MAX_GROUPS else list(counts)
            self.bands = sorted(kept, key=lambda t: (not _numeric_text(t), _sort_number(t), t))
            if len(counts) > MAX_GROUPS:
                self.bands.append("other")
            self.band = {v: i for i, v in enumerate(self.bands)}

    def position(self, value):
        if self.numeric:
            if not _is_number(value):
                return None
            x = math.log10(value) if self.log else value
            return 0.5 if self.high == self.low else (x - self.low) / (self.high - self.low)
        index = self.band.get(_fmt(value), self.band.get("other"))
        return None if index is None else (index + 0.5) / len(self.bands)

    def group(self, value):
        """The value's group: itself (few distinct values) or its bin (many), as (position, label)."""
        where = self.position(value)
        if where is None:
            return None
        if not self.numeric or self.distinct is not None:
            return where, _fmt(value) if self.numeric else self.bands[round(where * len(self.bands) - 0.5)]
        bin_ = min(int(where * MAX_GROUPS), MAX_GROUPS - 1)
        edges = [self._value_at(bin_ / MAX_GROUPS), self._value_at((bin_ + 1) / MAX_GROUPS)]
        return (bin_ + 0.5) / MAX_GROUPS, "%s to %s" % (_fmt(edges[0]), _fmt(edges[1]))

    def _value_at(self, fraction):
        x = self.low + fraction * (self.high - self.low)
        return 10**x if self.log else x

    def ticks(self, count=5):
        """(position, label) pairs along the axis."""
        if not self.numeric:
            step = max(1, math.ceil(len(self.bands) / 12))
            return [((i + 0.5) / len(self.bands), band) for i, band in enumerate(self.bands) if i % step == 0]
        if self.distinct is not None and len(self.distinct) <= count + 2:
            return [(self.position(v), _fmt(v)) for v in self.distinct]
        if self.high == self.low:
            return [(0.5, _fmt(self._value_at(0)))]
        return [(i / (count - 1), _fmt(self._value_at(i / (count - 1)))) for i in range(count)]


def not_charted(values):
    """Why a parameter gets no chart ("" if it gets one): text values with more distinct ones than an axis has
    bands to label (MAX_GROUPS), such as protein IDs, would be one unlabelled smear and an "other" band."""
    texts = {_fmt(v) for v in values if v is not None and not _is_number(v)}
    distinct = len({_fmt(v) for v in values if v is not None})
    if not texts or distinct <= MAX_GROUPS:
        return ""
    return "%d distinct values, more than a chart can label (%d): not charted as a category; the table lists them" % (
        distinct,
        MAX_GROUPS,
    )


def _numeric_text(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _sort_number(text):
    return float(text) if _numeric_text(text) else 0.0


def sample(items, limit, best_first=True):
    """At most limit items: the KEEP_BEST first (items come best first) and a fixed random draw of the rest."""
    if len(items) <= limit:
        return list(items)
    head, rest = list(items[:KEEP_BEST]), items[KEEP_BEST:]
    return head + random.Random(0).sample(list(rest), limit - len(head))


def _colour(share):
    return "#%02x%02x%02x" % tuple(round(lo + (hi - lo) * share) for lo, hi in zip(_LOW, _HIGH))


class MetricScale:
    """The metric's axis (y of slice charts, last axis of parallel coordinates) and its colours."""

    def __init__(self, values, descending):
        self.low, self.high = min(values), max(values)
        self.descending = descending
        pad = (self.high - self.low) * 0.05 or abs(self.high) * 0.05 or 1.0
        self.axis_low, self.axis_high = self.low - pad, self.high + pad

    def position(self, value):
        return (value - self.axis_low) / (self.axis_high - self.axis_low)

    def shade(self, value):
        """0 (worst) to SHADES - 1 (best)."""
        share = 0.5 if self.high == self.low else (value - self.low) / (self.high - self.low)
        return min(int((share if self.descending else 1 - share) * SHADES), SHADES - 1)

    def ticks(self, count=5):
        return (
            [
                (self.position(v), _fmt(v))
                for v in (self.low + (self.high - self.low) * i / (count - 1) for i in range(count))
            ]
            if self.high != self.low
            else [(self.position(self.low), _fmt(self.low))]
        )


def _by_shade(moves):
    """One path per shade, worst first (the best on top): (shade, path data) pairs drawn in few elements."""
    shades = {}
    for shade, move in moves:
        shades.setdefault(shade, []).append(move)
    return "".join(
        '<path d="%s" stroke="%s"/>' % ("".join(shades[shade]), _colour(shade / (SHADES - 1)))
        for shade in sorted(shades)
    )


class _Plot:
    """Where a slice chart draws: its plot area, and the metric's scale that places values in it."""

    def __init__(self, scale, width, height):
        self.scale = scale
        self.left, self.top, self.bottom = 52, 10, height - 40
        self.width, self.height = width - self.left - 12, self.bottom - self.top

    def x(self, where):
        return self.left + self.width * where

    def y(self, score):
        return self.bottom - self.height * self.scale.position(score)


def _slice_groups(axis, points):
    """The scores of each group of the axis (a value, or a bin of many): {(position, label): scores}."""
    by_value = {}
    for value, score in points:  # values repeat (a grid): group each distinct one once
        by_value.setdefault(value if type(value) in (int, float, str, bool) else _fmt(value), []).append(score)
    groups = {}
    for value, scores in by_value.items():
        group = axis.group(value)
        if group is not None:
            groups.setdefault(group, []).extend(scores)
    return groups


def _slice_ticks(plot, axis):
    """The metric's grid lines and labels, then the parameter's labels under the plot."""
    parts = []
    left, bottom = plot.left, plot.bottom
    for where, label in plot.scale.ticks():
        y = bottom - plot.height * where
        parts.append(
            '<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" font-size="10" '
            'text-anchor="end" fill="#616161">%s</text>'
            % (left, left + plot.width, y, y, left - 4, y + 3, escape(label))
        )
    for where, label in axis.ticks():
        parts.append(
            '<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#616161">%s</text>'
            % (plot.x(where), bottom + 13, escape(label[:14]))
        )
    return parts


def _slice_dots(plot, axis, points):
    """A sample of the points, one dot each, coloured by shade."""
    dots = []
    for value, score in sample(points, MAX_POINTS):
        where = axis.position(value)
        if where is not None:
            dots.append((plot.scale.shade(score), "M%d %dh0" % (round(plot.x(where)), round(plot.y(score)))))
    # A dot is a round cap on a zero-length segment: 10 bytes each, not a 35-byte circle.
    return '<g class="points" stroke-width="5" stroke-linecap="round" stroke-opacity="0.6">%s</g>' % _by_shade(dots)


def _slice_group(plot, name, where, label, scores):
    """A group's range of scores (a grey line) and its mean (an orange tick), titled with both and its best."""
    x, mean = plot.x(where), sum(scores) / len(scores)
    best = max(scores) if plot.scale.descending else min(scores)
    return (
        '<g class="group"><title>%s = %s: %d element(s), mean %s, best %s</title>'
        '<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#424242" stroke-opacity="0.5"/>'
        '<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e65100" stroke-width="2"/></g>'
        % (
            escape(name),
            escape(label),
            len(scores),
            _fmt(mean),
            _fmt(best),
            x,
            x,
            plot.y(min(scores)),
            plot.y(max(scores)),
            x - 5,
            x + 5,
            plot.y(mean),
            plot.y(mean),
        )
    )


def slice_svg(name, points, metric, scale, width=300, height=210):
    """The metric against one parameter: (parameter value, metric value) pairs, best first."""
    axis = Axis([p for p, _ in points])
    plot = _Plot(scale, width, height)
    left, top, bottom, plot_w, plot_h = plot.left, plot.top, plot.bottom, plot.width, plot.height
    parts = [
        '<svg class="slice" data-param="%s" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">'
        % (escape(name), width, height)
    ]
    parts += _slice_ticks(plot, axis)
    parts.append(_slice_dots(plot, axis, points))
    parts += [
        _slice_group(plot, name, where, label, scores) for (where, label), scores in _slice_groups(axis, points).items()
    ]
    parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#9e9e9e"/>' % (left, left + plot_w, bottom, bottom))
    parts.append(
        '<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#424242">%s%s</text>'
        % (left + plot_w / 2, height - 4, escape(name), " (log scale)" if axis.numeric and axis.log else "")
    )
    parts.append(
        '<text x="12" y="%d" font-size="11" text-anchor="middle" fill="#424242" transform="rotate(-90 12 %d)">'
        "%s</text>" % (top + plot_h / 2, top + plot_h / 2, escape(metric))
    )
    parts.append("</svg>")
    return "".join(parts)


def parallel_svg(names, rows, metric, scale, width=900, height=260):
    """One line per element through every parameter's axis and the metric's: rows are (params, score), best first."""
    axes = [Axis([params.get(n) for params, _ in rows]) for n in names]
    left, right, top, bottom = 50, 60, 18, height - 30
    gap = (width - left - right) / len(names)
    plot_h = bottom - top
    parts = ['<svg class="parallel" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">' % (width, height)]
    drawn = sample(rows, MAX_LINES)
    lines = []
    for params, score in reversed(drawn):  # the best drawn last, on top
        points = []
        for i, (name, axis) in enumerate(zip(names, axes)):
            where = axis.position(params.get(name))
            if where is not None:
                points.append("%d %d" % (round(left + gap * i), round(bottom - plot_h * where)))
        points.append("%d %d" % (round(left + gap * len(names)), round(bottom - plot_h * scale.position(score))))
        lines.append((scale.shade(score), "M" + "L".join(points)))
    parts.append('<g class="lines" fill="none" stroke-opacity="0.55">%s</g>' % _by_shade(lines))
    for i, (name, ticks) in enumerate([(n, a.ticks()) for n, a in zip(names, axes)] + [(metric, scale.ticks())]):
        x = left + gap * i
        parts.append(
            '<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#424242"/><text x="%.1f" y="%d" font-size="11" '
            'text-anchor="middle" fill="#212121" font-weight="bold">%s</text>'
            % (x, x, top, bottom, x, top - 6, escape(name))
        )
        for where, label in ticks:
            parts.append(
                '<text x="%.1f" y="%.1f" font-size="10" fill="#424242" stroke="#fff" stroke-width="3" '
                'paint-order="stroke">%s</text>' % (x + 4, bottom - plot_h * where + 3, escape(label[:14]))
            )
    parts.append(
        '<text x="%d" y="%d" font-size="11" fill="#616161">%d of %d elements drawn; darker is better</text>'
        % (left, height - 6, len(drawn), len(rows))
    )
    parts.append("</svg>")
    return "".join(parts)
