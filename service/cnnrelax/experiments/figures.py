"""Figures of experiment results as PNG bytes (matplotlib, Agg backend, fixed pixel size).

Phase transition: one column per method; top row the minimum recovery error over repetitions on one log
colour scale shared by every method (axes ``d`` and ``n``, as in the paper's Fig. 1), bottom row the
per-trial success rate with the transition (half the plateau) marked. Rotated digits: per-seed test RMSEs
with 95% intervals beside the paper's numbers, the paired differences, and the learned filters.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after matplotlib.use("Agg"), which must come first
import numpy as np  # noqa: E402 - after matplotlib.use("Agg"), which must come first
from matplotlib.colors import LogNorm, Normalize  # noqa: E402 - after matplotlib.use("Agg"), which must come first

from ..core.problem import InvalidParameterError  # noqa: E402 - after matplotlib.use("Agg"), which must come first

DPI = 100
PANEL_WIDTH_IN = 4.5
PHASE_HEIGHT_IN = 8.0
DIGITS_SIZE_IN = (15.0, 5.0)
ERROR_FLOOR = 1e-10
METHOD_TITLES = {"relaxation": "convex relaxation", "gradient_descent": "gradient descent",
                 "pseudo_inverse": "pseudo-inverse"}


def figure_size_px(result: dict[str, Any]) -> tuple[int, int]:
    """Width and height in pixels of ``render_figure(result)``."""
    if result.get("kind") == "phase_transition":
        return int(round(PANEL_WIDTH_IN * len(result["methods"]) * DPI)), int(round(PHASE_HEIGHT_IN * DPI))
    return int(round(DIGITS_SIZE_IN[0] * DPI)), int(round(DIGITS_SIZE_IN[1] * DPI))


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _grid(result: dict[str, Any], method: str, key: str) -> np.ndarray:
    """``(len(n), len(d))`` array of a cell quantity (NaN where missing)."""
    ds, ns = result["d"], result["n"]
    grid = np.full((len(ns), len(ds)), np.nan)
    for cell in result["cells"]:
        if cell["method"] == method and cell.get(key) is not None:
            grid[ns.index(cell["n"]), ds.index(cell["d"])] = cell[key]
    return grid


def _activation_label(result: dict[str, Any]) -> str:
    """``", leaky_relu (slope 0.1)"`` for a non-ReLU experiment; empty for ReLU (the paper's figure)."""
    spec = result.get("spec", {})
    name = spec.get("activation", "relu")
    if name == "relu":
        return ""
    if name == "leaky_relu":
        return f", leaky_relu (slope {spec.get('negative_slope')})"
    return f", {name}"


def render_phase_transition(result: dict[str, Any]) -> bytes:
    """Min-error heatmaps on one colour scale shared by every method (top) and per-trial success rates (bottom)."""
    methods, ds, ns = result["methods"], result["d"], result["n"]
    width, height = figure_size_px(result)
    fig, axes = plt.subplots(2, len(methods), figsize=(width / DPI, height / DPI), squeeze=False, layout="constrained")
    polished = bool(result.get("spec", {}).get("polish", True))
    errors = {m: np.clip(_grid(result, m, "min_error"), ERROR_FLOOR, 1.0) for m in methods}
    finite = np.concatenate([e[np.isfinite(e)] for e in errors.values()] + [np.array([ERROR_FLOOR, 1.0])])
    error_norm = LogNorm(vmin=float(finite.min()), vmax=float(max(finite.max(), 10 * finite.min())))
    rate_norm = Normalize(vmin=0.0, vmax=1.0)
    transition = result.get("transition", {})
    which = "polished" if polished else "unpolished"
    tol = result.get("spec", {}).get("recovery_tol", "")
    images: list[Any] = [None, None]
    for col, method in enumerate(methods):
        rates = _grid(result, method, "success_rate")
        for row, (values, norm, cmap, label) in enumerate((
            (errors[method], error_norm, "viridis", f"min error ||w - w*|| / ||w*||, {which} (grey: no filter)"),
            (rates, rate_norm, "magma", f"per-trial success rate, {which}, error <= {tol}"),
        )):
            ax = axes[row, col]
            masked = np.ma.masked_invalid(values)
            # Grey: no trial produced a filter (the LP was unbounded), too few samples.
            colours = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")
            images[row] = ax.imshow(masked, origin="lower", aspect="auto", cmap=colours, norm=norm,
                                    interpolation="nearest")
            ax.set_xticks(range(len(ds)), [str(d) for d in ds], fontsize=7)
            ax.set_yticks(range(len(ns)), [str(n) for n in ns], fontsize=7)
            ax.set_xlabel("d")
            ax.set_ylabel("n")
            title = METHOD_TITLES.get(method, method)
            ax.set_title(f"{title}, k={result['k']}{_activation_label(result)}\n{label}", fontsize=8)
            if row == 1:
                points = [(ds.index(t["d"]), ns.index(t["n"])) for t in transition.get(method, [])
                          if t["n"] is not None]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, "o-", color="cyan", markersize=4, linewidth=1, label="half plateau")
                    ax.legend(loc="upper left", fontsize=7)
    fig.colorbar(images[0], ax=list(axes[0, :]), fraction=0.046, pad=0.02, label="one scale for every method")
    fig.colorbar(images[1], ax=list(axes[1, :]), fraction=0.046, pad=0.02)
    return _png(fig)


def _mean_interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% Student-t interval (0 with one value)."""
    from scipy.stats import t as student

    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        return float(arr.mean()), 0.0
    return float(arr.mean()), float(student.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size))


def render_rotated_digits(result: dict[str, Any]) -> bytes:
    """Per-seed test RMSEs with 95% intervals beside the paper's numbers, the paired differences per filter
    shape, and the learned filters of the first seed."""
    width, height = figure_size_px(result)
    fig = plt.figure(figsize=(width / DPI, height / DPI))
    grid = fig.add_gridspec(1, 3, width_ratios=[1.25, 1.25, 0.7])
    variants = result.get("variants", [])
    primary = variants[0] if variants else None
    seeds = result.get("seeds", [result.get("seed")])
    ax = fig.add_subplot(grid[0, 0])
    columns: list[tuple[str, list[float], str]] = [("raw pixels", result.get("rmse_raw_per_seed", []), "grey")]
    if primary is not None:
        shape = "x".join(str(s) for s in primary["filter_shape"])
        count = max(primary.get("n_filters") or [0])
        columns += [(f"{shape}: 1 learned", primary["rmse_one_filter"]["per_seed"], "tab:blue"),
                    (f"{shape}: 1 random", primary["rmse_random_one_filter"]["per_seed"], "tab:red")]
        if count > 1:
            columns += [(f"{shape}: {count} learned", primary["rmse_all_filters"]["per_seed"], "tab:green"),
                        (f"{shape}: {count} random", primary["rmse_random_all_filters"]["per_seed"], "tab:orange")]
    for i in range(len(seeds)):  # one thin line per seed joins its paired values
        ys = [values[i] for _, values, _ in columns if i < len(values)]
        ax.plot(range(len(ys)), ys, color="lightgrey", linewidth=0.8, zorder=1)
    for x, (_label, values, colour) in enumerate(columns):
        if not values:
            continue
        ax.scatter([x] * len(values), values, color=colour, s=14, zorder=2)
        mean, half = _mean_interval(values)
        ax.errorbar([x + 0.18], [mean], yerr=[half], fmt="s", color="black", capsize=4, markersize=4, zorder=3)
    paper = result.get("paper") or {}
    if paper:
        text = (f"paper, {paper.get('dataset', 'MNIST')}, one run:\nraw {paper['raw']}, learned {paper['filter']} "
                f"({paper['filter'] - paper['raw']:+.2f})")
        ours = [v for _, values, _ in columns for v in values]
        low, high = (min(ours), max(ours)) if ours else (paper["filter"], paper["raw"])
        span = max(high - low, 1e-9)
        if low - span <= paper["filter"] and paper["raw"] <= high + span:  # on the same axis when it stays readable
            ax.scatter([0 - 0.18, 1 - 0.18], [paper["raw"], paper["filter"]], marker="D", color="purple", s=30,
                       zorder=3, label=text)
            ax.legend(loc="upper right", fontsize=7)
        else:
            ax.text(0.98, 0.98, text + "\n(off this axis)", transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    color="purple", bbox={"facecolor": "white", "edgecolor": "purple"})
    ax.set_xticks(range(len(columns)), [c[0] for c in columns], fontsize=7, rotation=20)
    ax.set_ylabel("test RMSE (degrees)")
    ax.set_title(f"rotated digits{_activation_label(result)}, {len(seeds)} seeds: dots per seed, squares mean +- "
                 "95% interval\n"
                 f"{result.get('source', '')}, {result.get('images', '?')} images", fontsize=8)
    ax2 = fig.add_subplot(grid[0, 1])
    rows: list[tuple[str, dict[str, Any]]] = []
    for v in variants:
        shape = "x".join(str(s) for s in v["filter_shape"])
        rows += [(f"{shape} 1 learned - raw", v["one_minus_raw"]),
                 (f"{shape} 1 learned - random", v["one_minus_random"])]
        if max(v.get("n_filters") or [0]) > 1:
            rows += [(f"{shape} all learned - raw", v["all_minus_raw"]),
                     (f"{shape} all learned - random", v["all_minus_random"])]
    for y, (_label, comparison) in enumerate(rows):
        colour = {"lower": "tab:green", "higher": "tab:red"}.get(str(comparison.get("verdict")), "tab:grey")
        if comparison.get("interval") is not None:
            low, high = comparison["interval"]
            ax2.plot([low, high], [y, y], color=colour, linewidth=3, solid_capstyle="butt")
        if comparison.get("mean") is not None:
            ax2.plot([comparison["mean"]], [y], "|", color="black", markersize=10)
    per_seed = {key: np.asarray(v[key]["per_seed"]) for v in variants[:1] for key in
                ("rmse_one_filter", "rmse_random_one_filter")}
    if per_seed and rows:
        raw = np.asarray(result.get("rmse_raw_per_seed", []))
        if raw.size == per_seed["rmse_one_filter"].size:
            ax2.scatter(per_seed["rmse_one_filter"] - raw, [0] * raw.size, s=10, color="black", zorder=3)
            ax2.scatter(per_seed["rmse_one_filter"] - per_seed["rmse_random_one_filter"], [1] * raw.size, s=10,
                        color="black", zorder=3)
    ax2.axvline(0.0, color="black", linewidth=0.8)
    ax2.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel("paired difference of test RMSE (degrees); < 0: the learned filter is better")
    ax2.set_title("95% intervals (green: below 0, red: above, grey: includes 0)", fontsize=8)
    filters = [(v["filter_shape"], f) for v in variants for f in v.get("filters", [])[:4]]
    count = max(len(filters), 1)
    cols = min(count, 3)
    rows_n = int(np.ceil(count / cols))
    sub_grid = grid[0, 2].subgridspec(rows_n, cols)
    for i, (shape, f) in enumerate(filters):
        sub = fig.add_subplot(sub_grid[i // cols, i % cols])
        arr = np.asarray(f)
        bound = float(np.max(np.abs(arr))) or 1.0
        sub.imshow(arr, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        sub.set_xticks([])
        sub.set_yticks([])
        sub.set_title(f"{shape[0]}x{shape[1]} #{i} (seed {seeds[0]})", fontsize=6)
    fig.tight_layout()
    return _png(fig)


def render_figure(result: dict[str, Any]) -> bytes:
    """PNG bytes of the result's figure (size given by :func:`figure_size_px`)."""
    kind = result.get("kind") if isinstance(result, dict) else None
    if kind == "phase_transition":
        return render_phase_transition(result)
    if kind == "rotated_digits":
        return render_rotated_digits(result)
    raise InvalidParameterError("kind", f"No figure for an experiment of kind {kind!r}.")
