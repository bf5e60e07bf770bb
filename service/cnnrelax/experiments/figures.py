"""Figures of experiment results (matplotlib, Agg backend, fixed pixel size, every text at least 10 pt).

:func:`figure` builds the matplotlib Figure of a result; :func:`render_figure` saves it as PNG, SVG or PDF bytes
(:class:`ImageFormat`).

Phase transition: one column per method; top row the minimum recovery error over repetitions on one log
colour scale shared by every method (axes ``d`` and ``n``, as in the paper's Fig. 1, ``n``'s spacing stated in
its label: the default grid doubles from row to row, drawn as equal cells), middle row the per-trial success
rate ``p`` with the transition (half the plateau) marked, bottom row the success within ``T`` trials,
``1 - (1 - p)^T`` (Theorem 1: one trial succeeds with probability about 1/2, ``T`` independent trials with
``1 - (1 - p)^T``; ``T`` is the run's trials, at least 8). Every colour bar says what it shows; the title
gives the repetitions, trials and seed. Rotated digits: per-seed test RMSEs with 95% intervals beside the
paper's numbers, the paired differences, and the learned filters on one colour scale with its bar.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after matplotlib.use("Agg"), which must come first
import numpy as np  # noqa: E402 - after matplotlib.use("Agg"), which must come first
from matplotlib.colors import LogNorm, Normalize  # noqa: E402 - after matplotlib.use("Agg"), which must come first

from ..errors import InvalidParameterError  # noqa: E402 - after matplotlib.use("Agg"), which must come first

DPI = 100
PANEL_WIDTH_IN = 5.2
PHASE_HEIGHT_IN = 13.0
DIGITS_SIZE_IN = (17.0, 6.5)
ERROR_FLOOR = 1e-10
#: Every text of a figure is at least this large (points), ticks included.
FONT_PT = 11
SMALL_PT = 10
#: Trials in "success within T trials" when the experiment itself ran fewer (the solve's default trials).
SUCCESS_TRIALS = 8
METHOD_TITLES = {"relaxation": "convex relaxation", "gradient_descent": "gradient descent",
                 "pseudo_inverse": "pseudo-inverse"}
#: What one attempt is called, per method (trials of the relaxation, restarts of gradient descent).
ATTEMPTS = {"relaxation": "trials", "gradient_descent": "restarts", "pseudo_inverse": "solves"}
STYLE = {"font.size": FONT_PT, "axes.titlesize": FONT_PT, "axes.labelsize": FONT_PT, "xtick.labelsize": SMALL_PT,
         "ytick.labelsize": SMALL_PT, "legend.fontsize": SMALL_PT, "figure.titlesize": FONT_PT + 2}


def figure_size_px(result: dict[str, Any]) -> tuple[int, int]:
    """Width and height in pixels of ``render_figure(result)``."""
    if result.get("kind") == "phase_transition":
        return int(round(PANEL_WIDTH_IN * len(result["methods"]) * DPI)), int(round(PHASE_HEIGHT_IN * DPI))
    return int(round(DIGITS_SIZE_IN[0] * DPI)), int(round(DIGITS_SIZE_IN[1] * DPI))


@dataclass(frozen=True)
class ImageFormat:
    """How a figure is written: ``format`` (a key of :data:`~.common.FIGURE_MEDIA_TYPES`) at ``dpi`` dots per
    inch (for SVG and PDF, the resolution of their embedded raster images)."""

    format: str = "png"
    dpi: int = DPI


PNG = ImageFormat()


def _png(fig: Any, image: ImageFormat = PNG) -> bytes:
    """``fig``'s bytes in ``image``'s format (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=image.format, dpi=image.dpi)
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


def spacing_note(values: list[int]) -> str:
    """How a grid's values are spaced, for an axis drawn with one equal cell per value."""
    if len(values) < 2:
        return "one value"
    ratios = {values[i + 1] / values[i] for i in range(len(values) - 1)}
    steps = {values[i + 1] - values[i] for i in range(len(values) - 1)}
    if len(ratios) == 1:
        ratio = ratios.pop()
        return "doubles from row to row" if ratio == 2 else f"x{ratio:g} from row to row"
    if len(steps) == 1:
        return f"+{steps.pop()} from row to row"
    return "rows not evenly spaced"


def success_within(rate: np.ndarray, trials: int) -> np.ndarray:
    """``1 - (1 - p)^T``: the chance that at least one of ``T`` independent attempts succeeds, each with ``p``."""
    return np.asarray(1.0 - (1.0 - rate) ** trials)


def phase_transition_figure(result: dict[str, Any]) -> Any:
    """The phase-transition figure (a matplotlib Figure): per method (columns) the minimum error over repetitions
    (one log scale shared by every method), the per-trial success rate ``p`` with the transition marked, and the
    success within ``T`` trials, ``1 - (1 - p)^T``; colour bars labelled, ``n``'s spacing stated, the run's
    repetitions, trials and seed in the title."""
    methods, ds, ns = result["methods"], result["d"], result["n"]
    spec = result.get("spec", {})
    width, height = figure_size_px(result)
    polished = bool(spec.get("polish", True))
    which = "polished" if polished else "unpolished"
    tol = spec.get("recovery_tol", "")
    trials = int(spec.get("trials", 1))
    within = max(trials, SUCCESS_TRIALS)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(3, len(methods), figsize=(width / DPI, height / DPI), squeeze=False,
                                 layout="constrained")
        errors = {m: np.clip(_grid(result, m, "min_error"), ERROR_FLOOR, 1.0) for m in methods}
        finite = np.concatenate([e[np.isfinite(e)] for e in errors.values()] + [np.array([ERROR_FLOOR, 1.0])])
        error_norm = LogNorm(vmin=float(finite.min()), vmax=float(max(finite.max(), 10 * finite.min())))
        rate_norm = Normalize(vmin=0.0, vmax=1.0)
        transition = result.get("transition", {})
        images: list[Any] = [None, None, None]
        n_label = f"n, samples ({spacing_note(list(ns))})"
        for col, method in enumerate(methods):
            rates = _grid(result, method, "success_rate")
            attempts = ATTEMPTS.get(method, "trials")
            rows = (
                (errors[method], error_norm, "viridis", f"least error over the repetitions, {which}"),
                (rates, rate_norm, "magma", f"per-{attempts[:-1]} success rate p"),
                (success_within(rates, within), rate_norm, "magma",
                 f"success within T = {within} {attempts}: 1 - (1 - p)^{within}"),
            )
            for row, (values, norm, cmap, label) in enumerate(rows):
                ax = axes[row, col]
                # Grey: no trial produced a filter (the LP was unbounded), too few samples.
                colours = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")
                images[row] = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap=colours,
                                        norm=norm, interpolation="nearest")
                ax.set_xticks(range(len(ds)), [str(d) for d in ds])
                ax.set_yticks(range(len(ns)), [str(n) for n in ns])
                ax.set_xlabel("d, row length")
                ax.set_ylabel(n_label)
                ax.set_title(f"{METHOD_TITLES.get(method, method)}\n{label}")
                if row == 1:
                    points = [(ds.index(t["d"]), ns.index(t["n"])) for t in transition.get(method, [])
                              if t["n"] is not None]
                    if points:
                        xs, ys = zip(*points, strict=True)
                        ax.plot(xs, ys, "o-", color="cyan", markersize=5, linewidth=1.5, label="half its plateau")
                        ax.legend(loc="upper left")
        fig.colorbar(images[0], ax=list(axes[0, :]), fraction=0.046, pad=0.02,
                     label="least ||w - w*|| / ||w*|| (grey: no filter)")
        fig.colorbar(images[1], ax=list(axes[1, :]), fraction=0.046, pad=0.02,
                     label=f"p: share of attempts with error <= {tol:g}" if isinstance(tol, float)
                     else "p: share of attempts that recovered w*")
        fig.colorbar(images[2], ax=list(axes[2, :]), fraction=0.046, pad=0.02,
                     label=f"1 - (1 - p)^{within}: at least one of {within} succeeds")
        repetitions = spec.get("repetitions", result["cells"][0]["repetitions"] if result["cells"] else "?")
        partial = " (partial: cancelled)" if result.get("partial") else ""
        fig.suptitle(f"Phase transition (paper Fig. 1), k = {result['k']}{_activation_label(result)}: "
                     f"{repetitions} repetitions a cell, {trials} trial{'s' if trials != 1 else ''} (relaxation) or "
                     f"restart{'s' if trials != 1 else ''} (gradient descent) a repetition, "
                     f"seed {spec.get('seed', '?')}{partial}")
    return fig


def render_phase_transition(result: dict[str, Any]) -> bytes:
    """The phase-transition figure as PNG bytes (:func:`phase_transition_figure`)."""
    return _png(phase_transition_figure(result))


def _mean_interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% Student-t interval (0 with one value)."""
    from scipy.stats import t as student

    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        return float(arr.mean()), 0.0
    return float(arr.mean()), float(student.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size))


def rotated_digits_figure(result: dict[str, Any]) -> Any:
    """The rotated-digits figure (a matplotlib Figure): per-seed test RMSEs with 95% intervals beside the paper's
    numbers, the paired differences per filter shape, and the learned filters of the first seed on one labelled
    colour scale."""
    width, height = figure_size_px(result)
    variants = result.get("variants", [])
    primary = variants[0] if variants else None
    seeds = result.get("seeds", [result.get("seed")])
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(width / DPI, height / DPI), layout="constrained")
        grid = fig.add_gridspec(1, 3, width_ratios=[1.2, 1.25, 0.8])
        ax = fig.add_subplot(grid[0, 0])
        columns: list[tuple[str, list[float], str]] = [("raw\npixels", result.get("rmse_raw_per_seed", []), "grey")]
        if primary is not None:
            shape = "x".join(str(s) for s in primary["filter_shape"])
            count = max(primary.get("n_filters") or [0])
            columns += [(f"{shape}\n1 learned", primary["rmse_one_filter"]["per_seed"], "tab:blue"),
                        (f"{shape}\n1 random", primary["rmse_random_one_filter"]["per_seed"], "tab:red")]
            if count > 1:
                columns += [(f"{shape}\n{count} learned", primary["rmse_all_filters"]["per_seed"], "tab:green"),
                            (f"{shape}\n{count} random", primary["rmse_random_all_filters"]["per_seed"],
                             "tab:orange")]
        for i in range(len(seeds)):  # one thin line per seed joins its paired values
            ys = [values[i] for _, values, _ in columns if i < len(values)]
            ax.plot(range(len(ys)), ys, color="lightgrey", linewidth=0.8, zorder=1)
        for x, (_label, values, colour) in enumerate(columns):
            if not values:
                continue
            ax.scatter([x] * len(values), values, color=colour, s=18, zorder=2)
            mean, half = _mean_interval(values)
            ax.errorbar([x + 0.18], [mean], yerr=[half], fmt="s", color="black", capsize=4, markersize=5, zorder=3)
        paper = result.get("paper") or {}
        if paper:
            text = (f"paper, {paper.get('dataset', 'MNIST')}, one run:\nraw {paper['raw']}, learned "
                    f"{paper['filter']} ({paper['filter'] - paper['raw']:+.2f})")
            ours = [v for _, values, _ in columns for v in values]
            low, high = (min(ours), max(ours)) if ours else (paper["filter"], paper["raw"])
            span = max(high - low, 1e-9)
            if low - span <= paper["filter"] and paper["raw"] <= high + span:  # same axis when it stays readable
                ax.scatter([0 - 0.18, 1 - 0.18], [paper["raw"], paper["filter"]], marker="D", color="purple", s=30,
                           zorder=3, label=text)
                ax.legend(loc="upper right")
            else:
                ax.text(0.98, 0.98, text + "\n(off this axis)", transform=ax.transAxes, ha="right", va="top",
                        color="purple", bbox={"facecolor": "white", "edgecolor": "purple"})
        ax.set_xticks(range(len(columns)), [c[0] for c in columns])
        ax.set_ylabel("test RMSE (degrees)")
        ax.set_title(f"dots: one per seed; squares: mean +- 95% interval\n{result.get('source', '')}, "
                     f"{result.get('images', '?')} images")
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
                ax2.plot([low, high], [y, y], color=colour, linewidth=4, solid_capstyle="butt")
            if comparison.get("mean") is not None:
                ax2.plot([comparison["mean"]], [y], "|", color="black", markersize=12)
        per_seed = {key: np.asarray(v[key]["per_seed"]) for v in variants[:1] for key in
                    ("rmse_one_filter", "rmse_random_one_filter")}
        if per_seed and rows:
            raw = np.asarray(result.get("rmse_raw_per_seed", []))
            if raw.size == per_seed["rmse_one_filter"].size:
                ax2.scatter(per_seed["rmse_one_filter"] - raw, [0] * raw.size, s=14, color="black", zorder=3)
                ax2.scatter(per_seed["rmse_one_filter"] - per_seed["rmse_random_one_filter"], [1] * raw.size, s=14,
                            color="black", zorder=3)
        ax2.axvline(0.0, color="black", linewidth=0.8)
        ax2.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax2.invert_yaxis()
        ax2.set_xlabel("paired difference of test RMSE (degrees)\n< 0: the learned filter is better")
        ax2.set_title("95% intervals (green: below 0, red: above,\ngrey: includes 0)")
        filters = [(v["filter_shape"], f) for v in variants for f in v.get("filters", [])[:2]][:6]
        count = max(len(filters), 1)
        cols = min(count, 2)
        rows_n = int(np.ceil(count / cols))
        sub_grid = grid[0, 2].subgridspec(rows_n, cols)
        arrays = [np.asarray(f, dtype=np.float64) for _, f in filters]
        bound = max([float(np.max(np.abs(a))) for a in arrays if a.size] + [1e-12])
        image = None
        panels = []
        for i, ((shape, _f), arr) in enumerate(zip(filters, arrays, strict=True)):
            sub = fig.add_subplot(sub_grid[i // cols, i % cols])
            image = sub.imshow(arr, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
            sub.set_xticks([])
            sub.set_yticks([])
            sub.set_title(f"{shape[0]}x{shape[1]} filter {i % 2 + 1}")
            panels.append(sub)
        if image is not None:
            norm_note = "as learned" if result.get("activation") == "softplus" else "unit-norm filters"
            fig.colorbar(image, ax=panels, fraction=0.08, pad=0.04, label=f"filter weight ({norm_note})")
        fig.suptitle(f"Rotated digits (paper Table 1){_activation_label(result)}: {len(seeds)} seed(s) from seed "
                     f"{result.get('seed', '?')}, {result.get('spec', {}).get('filters', '?')} learned filter(s) "
                     f"a shape; filters of seed {seeds[0] if seeds else '?'}")
    return fig


def render_rotated_digits(result: dict[str, Any]) -> bytes:
    """The rotated-digits figure as PNG bytes (:func:`rotated_digits_figure`)."""
    return _png(rotated_digits_figure(result))


#: The figure of each experiment kind.
FIGURES = {"phase_transition": phase_transition_figure, "rotated_digits": rotated_digits_figure}


def figure(result: dict[str, Any]) -> Any:
    """The matplotlib Figure of a result (close it with ``matplotlib.pyplot.close`` when done)."""
    kind = result.get("kind") if isinstance(result, dict) else None
    if kind not in FIGURES:
        raise InvalidParameterError("kind", f"No figure for an experiment of kind {kind!r}.")
    return FIGURES[str(kind)](result)


def render_figure(result: dict[str, Any], image: ImageFormat = PNG) -> bytes:
    """The bytes of the result's figure in ``image``'s format (PNG size given by :func:`figure_size_px`)."""
    return _png(figure(result), image)
