"""Phase transitions per activation (issue 12 item 5): per-trial success of the relaxation and of gradient descent.

For each activation (relu, leaky_relu with slope 0.01 and 0.1, absolute, squared_relu, softplus), each
``k`` in {1, 2} and each filter length ``m`` in {10, 20} this runs one phase-transition experiment through
the service's own code path (:func:`cnnrelax.experiments.run_experiment`, the LP limit solved by the
working-set solver users get, one relaxation trial and one gradient-descent restart per repetition) with
``d = k m`` and ``n = rho m`` for the ratios ``rho`` in ``--ratios`` (up to 40), 20 repetitions a cell.
Recorded per cell: the per-trial success rate of the relaxation's own filter (Theorem 1's quantity,
``success_rate_unpolished``), of its polished filter, and of gradient descent (polished; its unpolished
rate beside it), error ``<= 1e-4`` (up to sign for the absolute value).

And the reason, measured on the same planted problems (same seeds as the experiment): with
``g_i = sum_j sigma'(X_ij w*) X_ij``, the LP ``max r^T w`` s.t. ``sum_j sigma(X_ij w) <= y_i`` has ``w*`` as
its optimum exactly when ``r`` lies in the normal cone spanned by the ``g_i`` (the polar of the tangent cone
``{v : g_i^T v <= 0 for all i}``). For an activation positively homogeneous of degree ``q`` Euler's
identity gives ``g_i^T w* = q y_i``: with labels ``>= 0`` (ReLU, absolute value, squared ReLU) every ``g_i``
lies in the half-space ``{g : g^T w* >= 0}``, the cone is pointed, and a random ``r`` falls in it with
probability at most about 1/2. Leaky ReLU's negative labels and softplus's ``sigma'(u) u < 0`` for
``u < 0`` put ``g_i`` on both sides; once the ``g_i`` positively span ``R^m`` the tangent cone is ``{0}``,
the feasible set is ``{w*}`` alone and every direction recovers ``w*``. ``cone_full`` is the fraction of
repetitions where that holds (Gordan/Stiemke: some ``lambda >= 1`` with ``G^T lambda = 0``, and
``rank G = m``; an LP solved by HiGHS), ``negative_gw`` the mean fraction of samples with ``g_i^T w* < 0``,
and ``predicted`` the fraction of repetitions whose own trial direction ``r`` lies in ``cone{g_i}`` (NNLS;
for the absolute value in ``cone{g_i}`` or ``-cone{g_i}``, the normal cone at ``-w*``): the theory's
prediction of the relaxation's unpolished per-trial rate, printed beside the measured one.

Outputs: ``docs/bench_activations.json`` (every cell, the cone measurements, the command, the wall time),
one figure per activation ``docs/activations_<name>.png`` (per-trial success against ``n / m``), and a
Markdown table of the per-trial success rates on stdout (the README's).

Run: ``nice python bench/bench_activations.py`` (about 10 minutes on one core of the 2-core machine);
``--quick`` for 3 ratios and 5 repetitions; ``--workers 2`` runs two experiments at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from scipy.optimize import linprog, nnls

from cnnrelax.core.planted import PlantedSpec, planted_problem
from cnnrelax.core.trials import trial_direction
from cnnrelax.experiments import parse_experiment_spec, run_experiment
from cnnrelax.experiments.common import derived_seed
from cnnrelax.experiments.specs import PhaseTransitionSpec

ACTIVATIONS: list[tuple[str, float]] = [("relu", 0.01), ("leaky_relu", 0.01), ("leaky_relu", 0.1), ("absolute", 0.01),
                                        ("squared_relu", 0.01), ("softplus", 0.01)]
RATIOS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 40]
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs")


def label(name: str, slope: float) -> str:
    """A readable name: ``leaky_relu 0.1`` for leaky ReLU, the activation's name otherwise."""
    return f"{name} {slope:g}" if name == "leaky_relu" else name


def file_label(name: str, slope: float) -> str:
    return f"{name}_{str(slope).replace('.', 'p')}" if name == "leaky_relu" else name


def cone_full(G: np.ndarray) -> bool:
    """Do the rows of ``G`` positively span ``R^m`` (some ``lambda >= 1`` with ``G^T lambda = 0``, rank ``m``)?"""
    n, m = G.shape
    if np.linalg.matrix_rank(G) < m:
        return False
    res = linprog(np.zeros(n), A_eq=G.T, b_eq=np.zeros(m), bounds=[(1.0, None)] * n, method="highs")
    return bool(res.status == 0)


def in_cone(G: np.ndarray, r: np.ndarray, rtol: float = 1e-7) -> bool:
    """Is ``r`` a non-negative combination of the rows of ``G`` (NNLS residual at most ``rtol ||r||``)?"""
    _, residual = nnls(G.T, r)
    return bool(residual <= rtol * np.linalg.norm(r))


def cone_cell(name: str, slope: float, k: int, m: int, n: int, repetitions: int, seed: int) -> dict[str, float]:
    """The cone at ``w*`` on the experiment's own planted problems and trial directions (the same seeds).

    ``predicted``: the fraction of repetitions whose relaxation direction ``r`` lies in the normal cone
    ``cone{g_i}`` at ``w*`` (or, for the sign-symmetric absolute value, at ``-w*``, whose cone is
    ``-cone{g_i}``): the LP's optimum is then ``w*`` (``-w*``).
    """
    full = predicted = 0
    negative = []
    for rep in range(repetitions):
        rep_seed = derived_seed(seed, k, k * m, n, rep)
        pp = planted_problem(PlantedSpec(n=n, d=k * m, k=k, seed=rep_seed, activation=name, negative_slope=slope))
        G = pp.problem.gradient_rows(pp.w_star)
        full += cone_full(G)
        r = trial_direction(rep_seed, 0, m)
        predicted += in_cone(G, r) or (name == "absolute" and in_cone(G, -r))
        negative.append(float(np.mean(G @ pp.w_star < 0)))
    return {"cone_full": full / repetitions, "predicted": predicted / repetitions,
            "negative_gw": float(np.mean(negative))}


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One experiment (one activation, k, m) through the service's code path, and its cone measurements."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # as the service's workers run
        name, slope, k, m = job["activation"], job["negative_slope"], job["k"], job["m"]
        spec = parse_experiment_spec({
            "kind": "phase_transition", "k": k, "d": [k * m], "n": [r * m for r in job["ratios"]],
            "repetitions": job["repetitions"], "methods": ["relaxation", "gradient_descent"], "trials": 1,
            "seed": job["seed"], "activation": name, "negative_slope": slope,
        })
        assert isinstance(spec, PhaseTransitionSpec)
        start = time.perf_counter()
        result = run_experiment(spec, progress=lambda *a: None, should_stop=lambda: False)
        wall = time.perf_counter() - start
        cones = {n: cone_cell(name, slope, k, m, n, job["repetitions"], job["seed"]) for n in spec.n}
    cells = []
    for cell in result["cells"]:
        row = {key: cell[key] for key in ("method", "d", "n", "k", "m", "repetitions", "trials_run", "no_filter",
                                          "success_rate_unpolished", "success_rate_polished", "min_error_unpolished",
                                          "min_error_polished", "time_s")}
        row.update(cones[cell["n"]])
        cells.append(row)
    return {"activation": name, "negative_slope": slope, "k": k, "m": m, "spec": result["spec"], "cells": cells,
            "wall_s": wall}


def rate(runs: list[dict], name: str, slope: float, k: int, m: int, n: int, method: str, key: str) -> float | None:
    for run in runs:
        if (run["activation"], run["negative_slope"], run["k"], run["m"]) == (name, slope, k, m):
            for cell in run["cells"]:
                if cell["method"] == method and cell["n"] == n:
                    return float(cell[key])
    return None


def figure(runs: list[dict], name: str, slope: float, ratios: list[int], path: str) -> None:
    """Per-trial success against ``n / m``: the relaxation unpolished and polished, gradient descent, the cone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), sharey=True, layout="constrained")
    colours = {10: "tab:blue", 20: "tab:orange"}
    for ax, k in zip(axes, (1, 2), strict=True):
        for m, colour in colours.items():
            series = [
                ("relaxation", "success_rate_unpolished", "-", "o", "relaxation, unpolished"),
                ("relaxation", "success_rate_polished", "--", "^", "relaxation, polished"),
                ("gradient_descent", "success_rate_polished", ":", "s", "gradient descent (polished)"),
                ("relaxation", "predicted", "-", "x", "predicted: r in the normal cone at w* (or -w* for |u|)"),
                ("relaxation", "cone_full", "none", "+", "the normal cone at w* is R^m (fraction of problems)"),
            ]
            for method, key, style, marker, text in series:
                values = [rate(runs, name, slope, k, m, r * m, method, key) for r in ratios]
                xs = [r for r, v in zip(ratios, values, strict=True) if v is not None]
                ys = [v for v in values if v is not None]
                if not xs:
                    continue
                thin = key in ("cone_full", "predicted")
                ax.plot(xs, ys, linestyle=style, marker=marker, color=colour, alpha=0.45 if thin else 1.0,
                        linewidth=0.8 if thin else 1.4, markersize=4, label=f"m={m}: {text}")
        ax.axhline(0.5, color="grey", linewidth=0.6, linestyle="-.")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ratios, [str(r) for r in ratios], fontsize=7)
        ax.set_xlabel("n / m")
        ax.set_title(f"{label(name, slope)}, k={k} (d = {k} m), {runs[0]['spec']['repetitions']} repetitions a point",
                     fontsize=9)
        ax.set_ylim(-0.03, 1.03)
    axes[0].set_ylabel("per-trial success rate (error <= 1e-4)")
    handles, texts = axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, fontsize=7, loc="outside lower center", ncol=2)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(runs: list[dict], ratios: list[int]) -> str:
    """Markdown: per activation, k and m, the relaxation's per-trial rate unpolished / polished and gradient
    descent's, at a few ratios ``n / m``, and the cone's fraction at the largest."""
    shown = [r for r in (2, 4, 8, 16, 40) if r in ratios] or ratios
    head = ("| activation | k | m | " + " | ".join(f"n = {r} m" for r in shown)
            + f" | predicted at {shown[-1]} m | cone = R^m at {shown[-1]} m |")
    lines = [head, "|" + "---|" * (5 + len(shown))]
    for name, slope in ACTIVATIONS:
        for k in (1, 2):
            for m in (10, 20):
                cells = []
                for r in shown:
                    values = [rate(runs, name, slope, k, m, r * m, method, key) for method, key in (
                        ("relaxation", "success_rate_unpolished"), ("relaxation", "success_rate_polished"),
                        ("gradient_descent", "success_rate_polished"))]
                    cells.append(" / ".join("-" if v is None else f"{v:.2f}" for v in values))
                full = rate(runs, name, slope, k, m, shown[-1] * m, "relaxation", "cone_full")
                predicted = rate(runs, name, slope, k, m, shown[-1] * m, "relaxation", "predicted")
                lines.append(f"| {label(name, slope)} | {k} | {m} | " + " | ".join(cells)
                             + f" | {'-' if predicted is None else f'{predicted:.2f}'}"
                             + f" | {'-' if full is None else f'{full:.2f}'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--ratios", type=int, nargs="+", default=RATIOS, help="n / m")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="ratios 2, 8, 40 and 5 repetitions")
    parser.add_argument("--out", default=DOCS, help="directory of the JSON and the figures (default docs/)")
    args = parser.parse_args()
    ratios, repetitions = (([2, 8, 40], 5) if args.quick else (sorted(args.ratios), args.repetitions))
    jobs = [{"activation": name, "negative_slope": slope, "k": k, "m": m, "ratios": ratios,
             "repetitions": repetitions, "seed": args.seed}
            for name, slope in ACTIVATIONS for k in (1, 2) for m in (10, 20)]
    start = time.perf_counter()
    runs: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for run in pool.map(run_one, jobs):
            runs.append(run)
            print(f"{label(run['activation'], run['negative_slope']):16s} k={run['k']} m={run['m']}: "
                  f"{run['wall_s']:6.1f} s", flush=True)
    wall = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    command = "python " + " ".join(sys.argv)
    with open(os.path.join(args.out, "bench_activations.json"), "w") as fh:
        json.dump({"command": command, "wall_s": wall, "workers": args.workers, "ratios": ratios,
                   "repetitions": repetitions, "runs": runs}, fh, indent=1)
    for name, slope in ACTIVATIONS:
        figure(runs, name, slope, ratios, os.path.join(args.out, f"activations_{file_label(name, slope)}.png"))
    print(table(runs, ratios))
    gaps = [abs(c["success_rate_unpolished"] - c["predicted"]) for run in runs for c in run["cells"]
            if c["method"] == "relaxation"]
    print(f"\nrelaxation cells: |unpolished rate - predicted rate| has mean {np.mean(gaps):.3f} and max "
          f"{np.max(gaps):.2f} over {len(gaps)} cells")
    print(f"\n{command}: wall time {wall:.1f} s with {args.workers} worker process(es), "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
