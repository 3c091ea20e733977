"""Server-rendered SVG charts: no JavaScript library, nothing loaded from elsewhere.

`stacked_bar_chart` draws one bar per category (a statistics period), stacked from the series
values (success, timeouts, …), with a y axis in whole numbers, category labels on the x axis
(thinned out when there are many), both axis titles and a legend. The SVG is accessible: it is
an image (`role="img"`) labelled by its `<title>` and described by its `<desc>`; every bar
segment carries its own `<title>` (shown as a tooltip by browsers). Pages show the same numbers
in a table under the chart, the alternative for anyone who cannot see it.

Every text is escaped for XML, so the output is well-formed whatever a slot is called. Colours
are presentation attributes (`fill`), not inline styles, so a strict Content-Security-Policy
allows them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

SVG_NS = "http://www.w3.org/2000/svg"

# Geometry of the drawing (viewBox units; CSS scales the picture to the page's width).
WIDTH = 800
HEIGHT = 340
MARGIN_LEFT = 56
MARGIN_RIGHT = 16
MARGIN_TOP = 16
MARGIN_BOTTOM = 92  # category labels, x axis title and legend
MAX_X_LABELS = 12
CHAR_WIDTH = 7.2  # average width of a 12 px character
LABEL_GAP = 24
GAP_RATIO = 0.2  # of each category's width, left empty between bars
TARGET_TICKS = 5


@dataclass(frozen=True)
class Series:
    """One stacked component: its key (for tests and CSS), label (legend) and colour."""

    key: str
    label: str
    color: str


def _text(value: object) -> str:
    """Text or attribute content, escaped for XML (quotes too)."""
    return escape(str(value), quote=True)


def _number(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def nice_ceiling(maximum: int, ticks: int = TARGET_TICKS) -> tuple[int, int]:
    """(top, step): a round tick step (1, 2 or 5 × 10^k, at least 1) and the smallest multiple
    of it at or above `maximum` (at least one step), so the axis reads in round numbers."""
    if maximum <= 0:
        return 1, 1
    rough = maximum / ticks
    magnitude = 10 ** math.floor(math.log10(rough)) if rough >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    step = max(1, int(step))
    return step * math.ceil(maximum / step), step


def stacked_bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    category_labels: Sequence[str] | None = None,
    series: Sequence[Series],
    values: Sequence[Sequence[int]],
    x_label: str,
    y_label: str,
) -> SafeString:
    """An SVG stacked bar chart: `values[i][j]` is series j's value in category i.

    `categories` name the bars (in their tooltips); `category_labels`, if given, are the
    shorter texts written under the x axis. `chart_id` prefixes the ids of the title and
    description (unique on the page). Values must be whole numbers ≥ 0. Heights are
    proportional to the values on a y axis from 0 to a round number at or above the tallest
    stack.
    """
    if len(values) != len(categories):
        raise ValueError("one row of values per category")
    labels = categories if category_labels is None else category_labels
    if len(labels) != len(categories):
        raise ValueError("one label per category")
    if any(len(row) != len(series) for row in values):
        raise ValueError("one value per series in every row")
    if any(value < 0 for row in values for value in row):
        raise ValueError("values must not be negative")

    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    baseline = MARGIN_TOP + plot_height
    top, step = nice_ceiling(max((sum(row) for row in values), default=0))
    scale = plot_height / top
    slot_width = plot_width / len(categories) if categories else plot_width
    bar_width = slot_width * (1 - GAP_RATIO)
    # As many category labels as fit side by side (about 7 units per character at 12 px).
    widest = max((len(label) for label in labels), default=1)
    fitting = max(1, min(MAX_X_LABELS, int(plot_width // (widest * CHAR_WIDTH + LABEL_GAP))))
    label_every = max(1, math.ceil(len(categories) / fitting))
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"

    parts = [
        f'<svg xmlns="{SVG_NS}" id="{_text(chart_id)}" class="chart" role="img" '
        f'aria-labelledby="{_text(title_id)} {_text(desc_id)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{_text(title_id)}">{_text(title)}</title>',
        f'<desc id="{_text(desc_id)}">{_text(description)}</desc>',
    ]

    # Horizontal grid lines with the y axis' tick labels.
    parts.append('<g class="y-axis" font-size="12" fill="#5b6475" text-anchor="end">')
    for tick in range(0, top + 1, step):
        y = baseline - tick * scale
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{_number(y)}" '
            f'y2="{_number(y)}" stroke="#dde1e8" stroke-width="1"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{_number(y + 4)}">{tick}</text>'
        )
    parts.append("</g>")

    # The bars: one group per category, one rectangle per non-zero series value, stacked up.
    parts.append('<g class="bars">')
    for index, (category, row) in enumerate(zip(categories, values, strict=True)):
        x = MARGIN_LEFT + index * slot_width + (slot_width - bar_width) / 2
        total = sum(row)
        parts.append(
            f'<g class="bar-group" data-category="{_text(category)}" data-total="{total}">'
            f"<title>{_text(category)}: {total} in all</title>"
        )
        stacked = 0
        for item, value in zip(series, row, strict=True):
            if value == 0:
                continue
            height = value * scale
            y = baseline - (stacked + value) * scale
            parts.append(
                f'<rect class="bar" data-series="{_text(item.key)}" data-value="{value}" '
                f'x="{_number(x)}" y="{_number(y)}" width="{_number(bar_width)}" '
                f'height="{_number(height)}" fill="{_text(item.color)}">'
                f"<title>{_text(category)}: {_text(item.label)} {value}</title></rect>"
            )
            stacked += value
        parts.append("</g>")
    parts.append("</g>")

    # The axes, the category labels (every `label_every`-th) and the axis titles.
    parts.append(
        f'<line class="x-axis" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" '
        f'y1="{_number(baseline)}" y2="{_number(baseline)}" stroke="#1d2330" stroke-width="1"/>'
        f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" '
        f'y2="{_number(baseline)}" stroke="#1d2330" stroke-width="1"/>'
    )
    parts.append('<g class="x-labels" font-size="12" fill="#1d2330" text-anchor="middle">')
    for index in range(0, len(categories), label_every):
        x = MARGIN_LEFT + (index + 0.5) * slot_width
        parts.append(f'<text x="{_number(x)}" y="{baseline + 16}">{_text(labels[index])}</text>')
    parts.append("</g>")
    parts.append(
        f'<text class="axis-title" x="{_number(MARGIN_LEFT + plot_width / 2)}" '
        f'y="{baseline + 36}" font-size="12" fill="#5b6475" text-anchor="middle">'
        f"{_text(x_label)}</text>"
        f'<text class="axis-title" x="14" y="{_number(MARGIN_TOP + plot_height / 2)}" '
        f'font-size="12" fill="#5b6475" text-anchor="middle" '
        f'transform="rotate(-90 14 {_number(MARGIN_TOP + plot_height / 2)})">'
        f"{_text(y_label)}</text>"
    )

    # The legend, in one row under the axis title.
    parts.append(
        f'<g class="legend" font-size="12" fill="#1d2330" transform="translate(0 {HEIGHT - 22})">'
    )
    x = float(MARGIN_LEFT)
    for item in series:
        parts.append(
            f'<g class="legend-item" data-series="{_text(item.key)}">'
            f'<rect x="{_number(x)}" y="0" width="12" height="12" fill="{_text(item.color)}"/>'
            f'<text x="{_number(x + 16)}" y="10">{_text(item.label)}</text></g>'
        )
        x += 16 + CHAR_WIDTH * len(item.label) + 18
    parts.append("</g>")

    parts.append("</svg>")
    # Every piece of text above went through _text(): the markup is ours alone.
    return mark_safe("".join(parts))  # noqa: S308
