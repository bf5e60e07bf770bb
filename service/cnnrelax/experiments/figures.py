"""Figures of experiment results as PNG bytes (matplotlib, Agg backend, fixed pixel size).

Phase transition: one column per method; top row the minimum recovery error over repetitions on a log
colour scale (axes ``d`` and ``n``, as in the paper's Fig. 1), bottom row the per-trial success rate with
the transition (half the plateau) marked. Rotated digits: test RMSE per variant, and the learned filters.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402

from ..problem import InvalidParameterError  # noqa: E402

DPI = 100
PANEL_WIDTH_IN = 4.5
PHASE_HEIGHT_IN = 8.0
DIGITS_SIZE_IN = (12.0, 5.0)
ERROR_FLOOR = 1e-10
METHOD_TITLES = {"relaxation": "convex relaxation", "gradient_descent": "gradient descent",
                 "pseudo_inverse": "pseudo-inverse"}


def figure_size_px(result: dict) -> tuple[int, int]:
    """Width and height in pixels of ``render_figure(result)``."""
    if result.get("kind") == "phase_transition":
        return int(round(PANEL_WIDTH_IN * len(result["methods"]) * DPI)), int(round(PHASE_HEIGHT_IN * DPI))
    return int(round(DIGITS_SIZE_IN[0] * DPI)), int(round(DIGITS_SIZE_IN[1] * DPI))


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _grid(result: dict, method: str, key: str) -> np.ndarray:
    """``(len(n), len(d))`` array of a cell quantity (NaN where missing)."""
    ds, ns = result["d"], result["n"]
    grid = np.full((len(ns), len(ds)), np.nan)
    for cell in result["cells"]:
        if cell["method"] == method and cell.get(key) is not None:
            grid[ns.index(cell["n"]), ds.index(cell["d"])] = cell[key]
    return grid


def render_phase_transition(result: dict) -> bytes:
    methods, ds, ns = result["methods"], result["d"], result["n"]
    width, height = figure_size_px(result)
    fig, axes = plt.subplots(2, len(methods), figsize=(width / DPI, height / DPI), squeeze=False)
    error_norm = LogNorm(vmin=ERROR_FLOOR, vmax=1.0)
    rate_norm = Normalize(vmin=0.0, vmax=1.0)
    transition = result.get("transition", {})
    for col, method in enumerate(methods):
        errors = np.clip(_grid(result, method, "min_error"), ERROR_FLOOR, 1.0)
        rates = _grid(result, method, "success_rate")
        for row, (values, norm, cmap, label) in enumerate((
            (errors, error_norm, "viridis", "min error ||w - w*|| / ||w*|| (grey: no filter)"),
            (rates, rate_norm, "magma", "per-trial success rate"),
        )):
            ax = axes[row, col]
            masked = np.ma.masked_invalid(values)
            # Grey: no trial produced a filter (the LP was unbounded), too few samples.
            colours = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")
            image = ax.imshow(masked, origin="lower", aspect="auto", cmap=colours, norm=norm, interpolation="nearest")
            ax.set_xticks(range(len(ds)), [str(d) for d in ds], fontsize=7)
            ax.set_yticks(range(len(ns)), [str(n) for n in ns], fontsize=7)
            ax.set_xlabel("d")
            ax.set_ylabel("n")
            title = METHOD_TITLES.get(method, method)
            ax.set_title(f"{title}, k={result['k']}\n{label}", fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            if row == 1:
                points = [(ds.index(t["d"]), ns.index(t["n"])) for t in transition.get(method, []) if t["n"] is not None]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, "o-", color="cyan", markersize=4, linewidth=1, label="half plateau")
                    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def render_rotated_digits(result: dict) -> bytes:
    width, height = figure_size_px(result)
    fig = plt.figure(figsize=(width / DPI, height / DPI))
    variants = result.get("variants", [])
    ax = fig.add_subplot(1, 2, 1)
    labels, values, colours = ["raw pixels"], [result["rmse_raw"]], ["grey"]
    for v in variants:
        shape = "x".join(str(s) for s in v["filter_shape"])
        for key, label, colour in (("rmse_one_filter", f"{shape}: 1 learned", "tab:blue"),
                                   ("rmse_random_one_filter", f"{shape}: 1 random", "tab:red"),
                                   ("rmse_all_filters", f"{shape}: {v.get('n_filters', 0)} learned", "tab:green"),
                                   ("rmse_random_all_filters", f"{shape}: {v.get('n_random_filters', 0)} random",
                                    "tab:orange")):
            if v.get(key) is not None:
                labels.append(label)
                values.append(v[key])
                colours.append(colour)
    ax.barh(range(len(values)), values, color=colours)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    low = min(values)
    ax.set_xlim(0.9 * low, 1.02 * max(values))
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:.2f}", va="center", fontsize=7)
    ax.set_xlabel("test RMSE (degrees)")
    ax.set_title(f"rotated digits, seed {result['seed']}: ridge on pixels vs + (X_ij w)_+", fontsize=9)
    filters = [(v["filter_shape"], f) for v in variants for f in v.get("filters", [])[:4]]
    count = max(len(filters), 1)
    cols = min(count, 6)
    rows = int(np.ceil(count / cols))
    for i, (shape, f) in enumerate(filters):
        sub = fig.add_subplot(rows, 2 * cols, (i // cols) * 2 * cols + cols + (i % cols) + 1)
        arr = np.asarray(f)
        bound = float(np.max(np.abs(arr))) or 1.0
        sub.imshow(arr, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        sub.set_xticks([])
        sub.set_yticks([])
        sub.set_title(f"{shape[0]}x{shape[1]} #{i}", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def render_figure(result: dict) -> bytes:
    """PNG bytes of the result's figure (size given by :func:`figure_size_px`)."""
    kind = result.get("kind") if isinstance(result, dict) else None
    if kind == "phase_transition":
        return render_phase_transition(result)
    if kind == "rotated_digits":
        return render_rotated_digits(result)
    raise InvalidParameterError("kind", f"No figure for an experiment of kind {kind!r}.")
