"""Pictures of a filter as inline SVG, drawn on the server (no script, no chart library, no inline style).

- :func:`heat_map`: a 2-D filter (``p x q``) as a grid of cells coloured on a diverging scale symmetric about
  zero (blue negative, white zero, red positive; the scale's end is ``max |w|``), with a labelled colour bar.
- :func:`bars`: a 1-D filter as bars up (positive) or down (negative) from a zero line, the planted filter
  ``w*`` (when known) as a black tick on each bar.

Every value also appears in a ``<title>`` (the browser's tooltip) and the picture has a text alternative.
Colours are ``fill`` attributes, so a Content-Security-Policy without ``'unsafe-inline'`` styles shows them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

from markupsafe import Markup

NEGATIVE = (33, 102, 172)   # #2166ac
ZERO = (247, 247, 247)      # #f7f7f7
POSITIVE = (178, 24, 43)    # #b2182b
BAR_WIDTH = 18
BAR_HEIGHT = 160


def colour(value: float, scale: float) -> str:
    """The diverging colour of ``value`` on ``[-scale, scale]`` (clipped), as ``#rrggbb``."""
    t = 0.0 if scale <= 0 or not math.isfinite(value) else max(-1.0, min(1.0, value / scale))
    end = POSITIVE if t > 0 else NEGATIVE
    rgb = (round(z + abs(t) * (e - z)) for z, e in zip(ZERO, end, strict=True))
    return "#" + "".join(f"{channel:02x}" for channel in rgb)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _scale(values: Sequence[float]) -> float:
    finite = [abs(v) for v in values if math.isfinite(v)]
    return max(finite, default=0.0)


def _colour_bar(x: float, y: float, height: float, scale: float) -> list[str]:
    """A vertical colour bar from ``-scale`` (bottom) to ``scale`` (top), labelled at both ends and zero."""
    parts = ['<defs><linearGradient id="filter-scale" x1="0" y1="1" x2="0" y2="0">',
             f'<stop offset="0" stop-color="{colour(-1, 1)}"/><stop offset="0.5" stop-color="{colour(0, 1)}"/>',
             f'<stop offset="1" stop-color="{colour(1, 1)}"/></linearGradient></defs>',
             f'<rect x="{x}" y="{y}" width="12" height="{height}" fill="url(#filter-scale)" stroke="#888"/>']
    for label, at in ((scale, y), (0.0, y + height / 2), (-scale, y + height)):
        parts.append(f'<text x="{x + 16}" y="{at + 4:.1f}" font-size="11">{escape(_number(label))}</text>')
    parts.append(f'<text x="{x}" y="{y + height + 18:.1f}" font-size="11">w entry</text>')
    return parts


def cell_size(rows: int, columns: int) -> int:
    """Pixels per heat-map cell: about 240 pixels for the larger side, 12 to 48 per cell."""
    return max(12, min(48, 240 // max(rows, columns, 1)))


def heat_map(w: Sequence[float], rows: int, columns: int, title: str = "The filter",
             scale: float | None = None) -> Markup:
    """``w`` (row-major, ``rows x columns``) as a heat map with a colour bar (its end: ``scale``, default max |w|)."""
    if len(w) != rows * columns:
        raise ValueError(f"a {rows} x {columns} heat map needs {rows * columns} values, got {len(w)}")
    scale = _scale(w) if scale is None else scale
    cell = cell_size(rows, columns)
    top = 10
    width, height = columns * cell, rows * cell
    bar_height = max(height, 120)
    total_w, total_h = width + 90, top + bar_height + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="filter heat-map" role="img" '
             f'width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}">',
             f"<title>{escape(title)}: a {rows} x {columns} heat map, largest |w| {escape(_number(scale))}</title>"]
    for i in range(rows):
        for j in range(columns):
            value = float(w[i * columns + j])
            parts.append(f'<rect class="cell" x="{j * cell}" y="{top + i * cell}" width="{cell}" height="{cell}" '
                         f'fill="{colour(value, scale)}" stroke="#fff"><title>w[{i},{j}] = '
                         f"{escape(_number(value))}</title></rect>")
    parts += _colour_bar(width + 16, top, bar_height, scale)
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(w: Sequence[float], w_star: Sequence[float] | None = None, title: str = "The filter") -> Markup:
    """``w`` as bars from a zero line (and ``w_star``, when given, as ticks)."""
    values = [float(v) for v in w]
    reference = [float(v) for v in w_star] if w_star is not None and len(w_star) == len(values) else None
    scale = _scale(values + (reference or [])) or 1.0
    half = BAR_HEIGHT / 2
    left, top = 56, 10
    width = left + len(values) * (BAR_WIDTH + 4) + 10
    height = top + BAR_HEIGHT + 30
    zero = top + half
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="filter bars" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{escape(title)}: {len(values)} entries as bars, largest |w| {escape(_number(scale))}"
             f"{' (ticks: the planted filter)' if reference else ''}</title>",
             f'<line x1="{left - 4}" y1="{zero}" x2="{width - 6}" y2="{zero}" stroke="#444"/>']
    for label, at in ((scale, top), (0.0, zero), (-scale, top + BAR_HEIGHT)):
        parts.append(f'<text x="{left - 8}" y="{at + 4:.1f}" font-size="11" text-anchor="end">'
                     f"{escape(_number(label))}</text>")
    for index, value in enumerate(values):
        x = left + index * (BAR_WIDTH + 4)
        size = 0.0 if not math.isfinite(value) else abs(value) / scale * half
        y = zero - size if value > 0 else zero
        parts.append(f'<rect class="bar" x="{x}" y="{y:.2f}" width="{BAR_WIDTH}" height="{size:.2f}" '
                     f'fill="{colour(value, scale)}" stroke="#666"><title>w[{index}] = {escape(_number(value))}'
                     "</title></rect>")
        if reference is not None:
            tick = zero - reference[index] / scale * half
            parts.append(f'<line class="w-star" x1="{x - 2}" y1="{tick:.2f}" x2="{x + BAR_WIDTH + 2}" '
                         f'y2="{tick:.2f}" stroke="#000" stroke-width="2"><title>w*[{index}] = '
                         f"{escape(_number(reference[index]))}</title></line>")
        if len(values) <= 40:
            parts.append(f'<text x="{x + BAR_WIDTH / 2}" y="{top + BAR_HEIGHT + 18}" font-size="10" '
                         f'text-anchor="middle">{index}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
