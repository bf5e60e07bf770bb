"""Phase transition (paper Fig. 1): recovery of a planted filter over a grid of ``(d, n)``, per method.

Cell ``(method, d, n)``: ``R`` repetitions, each a fresh planted problem ``y_i = sum_j sigma(X_ij w*)`` with
Gaussian ``X`` and unit ``w*``, seeded by ``(seed, k, d, n, repetition)`` (the same problem for every method,
and the same ``X`` and ``w*`` for every activation). ``sigma`` is the spec's ``activation`` (ReLU by default;
``negative_slope`` for leaky ReLU); for the absolute value ``w*`` and ``-w*`` fit alike and errors are up to
sign (:func:`cnnrelax.core.trials.recovery`).
Each repetition runs ``trials`` relaxation directions / gradient-descent restarts. Both methods' filters
are polished the same way (:func:`cnnrelax.core.trials.polish`: least squares on the filter's activation
pattern, or Gauss-Newton for the smooth activations, kept when the loss drops), so they are compared at
the same accuracy, not at their solvers' budgets (gradient descent stops near 1e-6, the relaxation's
polished filter near 1e-10). Recorded per cell,
each both ``_polished`` and ``_unpolished``, the headline (``min_error``, ``success_rate``) being the
polished one unless ``polish`` is false:

- ``min_error``: ``min`` over repetitions of ``||w_hat - w*|| / ||w*||`` for the repetition's selected
  (least-loss) filter -- the quantity the paper plots;
- ``success_rate``: the fraction of trials (restarts) whose filter has error ``<= recovery_tol`` (one
  threshold for every method); for the relaxation, ``success_rate_unpolished`` is Theorem 1's per-trial
  probability (``-> 1/2`` for ReLU; for other activations it is what the experiment measures);
- time spent.

The transition, per method and ``d``: the smallest ``n`` at which the success rate, smoothed by a monotone
fit over ``n``, reaches half of its plateau (the fit's largest value), so one noisy cell does not move it.

The parameters, their defaults and checks: :class:`cnnrelax.experiments.specs.PhaseTransitionSpec`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..core.baselines import gradient_descent, pseudo_inverse
from ..core.planted import PlantedSpec, planted_problem
from ..core.problem import ConvProblem, FloatArray
from ..core.relaxation import RelaxationSolver
from ..core.trials import polish, recovery, trial_direction
from .common import ExperimentCancelled, ShouldStop, check_stop, derived_seed
from .specs import PhaseTransitionSpec


def list_cells(spec: PhaseTransitionSpec) -> list[dict[str, Any]]:
    """Every ``(method, d, n)`` cell, the most expensive first (a pool then balances its load)."""
    cells = [{"method": method, "d": d, "n": n} for method in spec.methods for d in spec.d for n in spec.n]
    weight = {"relaxation": 4.0, "gradient_descent": 1.0, "pseudo_inverse": 0.01}
    return sorted(cells, key=lambda c: -weight[c["method"]] * c["n"] * (c["d"] // spec.k) ** 2)


def cell_key(cell: dict[str, Any]) -> tuple[str, int, int]:
    return (str(cell["method"]), int(cell["d"]), int(cell["n"]))


def _relative_error(problem: ConvProblem, w: FloatArray, w_star: FloatArray) -> float:
    """``||w - w*|| / ||w*||``, up to sign for a sign-symmetric activation (:func:`cnnrelax.core.trials.recovery`)."""
    return recovery(problem, w, w_star)[0]


def _selected(rows: list[tuple[float, float]]) -> float | None:
    """The error of the least-loss filter among ``(loss, error)`` pairs."""
    return min(rows)[1] if rows else None


def run_cell(spec: PhaseTransitionSpec, cell: dict[str, Any], should_stop: ShouldStop | None = None) -> dict[str, Any]:
    """Solve ``repetitions`` planted problems of size ``(d, n)`` with one method; summarise the errors.

    Every trial (relaxation) or restart (gradient descent) is recorded twice: its own filter and that filter
    polished by :func:`cnnrelax.core.trials.polish`; the headline ``min_error`` and ``success_rate`` are the
    polished ones when ``spec.polish`` (the default), so both methods are compared at the same accuracy.
    """
    method, d, n = cell_key(cell)
    k, tol = spec.k, spec.recovery_tol
    start = time.monotonic()
    selected: dict[str, list[float]] = {"polished": [], "unpolished": []}
    successes = {"polished": 0, "unpolished": 0}
    trials_run = no_filter = 0
    for rep in range(spec.repetitions):
        check_stop(should_stop)
        rep_seed = derived_seed(spec.seed, k, d, n, rep)
        pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=rep_seed, distribution=spec.distribution,
                                         activation=spec.activation, negative_slope=spec.negative_slope))
        problem, w_star = pp.problem, pp.w_star
        rows: dict[str, list[tuple[float, float]]] = {"polished": [], "unpolished": []}
        if method == "relaxation":
            beta = spec.beta if spec.relaxation == "qp" else 0.0
            solver = RelaxationSolver(problem, spec.relaxation, beta=beta)
            for t in range(spec.trials):
                sol = solver.solve(trial_direction(rep_seed, t, problem.m), should_stop=should_stop)
                if sol.status == "cancelled":
                    raise ExperimentCancelled("The experiment was cancelled.")
                trials_run += 1
                if sol.w is None:
                    no_filter += 1
                    continue
                outcome = polish(problem, sol.w)
                final = outcome.w if outcome.accepted else sol.w
                rows["unpolished"].append((problem.loss(sol.w), _relative_error(problem, sol.w, w_star)))
                rows["polished"].append((problem.loss(final), _relative_error(problem, final, w_star)))
        elif method == "gradient_descent":
            result = gradient_descent(problem, restarts=spec.trials, iterations=spec.gd_iterations,
                                      step=spec.gd_step, seed=rep_seed, tol=spec.gd_tol, w_star=w_star,
                                      recovery_tol=tol, should_stop=should_stop, polish=True)
            if result.status == "cancelled":
                raise ExperimentCancelled("The experiment was cancelled.")
            for restart in result.restarts:
                assert restart.raw_loss is not None  # gradient_descent records every restart's own loss
                trials_run += 1
                rows["unpolished"].append((float(restart.raw_loss), _relative_error(problem, restart.w, w_star)))
                rows["polished"].append((restart.loss, _relative_error(problem, restart.final_w, w_star)))
        else:
            trials_run += 1
            w = pseudo_inverse(problem)
            row = (problem.loss(w), _relative_error(problem, w, w_star))
            rows["unpolished"].append(row)
            rows["polished"].append(row)
        for key, pairs in rows.items():
            successes[key] += sum(error <= tol for _, error in pairs)
            error = _selected(pairs)
            if error is not None:
                selected[key].append(error)
    elapsed = time.monotonic() - start
    headline = "polished" if spec.polish else "unpolished"
    out: dict[str, Any] = {
        "method": method, "d": d, "n": n, "k": k, "m": d // k,
        "repetitions": spec.repetitions, "trials_run": trials_run,
        "min_error": min(selected[headline]) if selected[headline] else None,
        "median_error": float(np.median(selected[headline])) if selected[headline] else None,
        "success_rate": successes[headline] / trials_run if trials_run else 0.0,
        "successes": int(successes[headline]),
        "no_filter": no_filter,
        "time_s": elapsed,
        "time_per_repetition_s": elapsed / spec.repetitions,
    }
    for key in ("polished", "unpolished"):
        out[f"min_error_{key}"] = min(selected[key]) if selected[key] else None
        out[f"success_rate_{key}"] = successes[key] / trials_run if trials_run else 0.0
    return out


def monotone_fit(values: list[float], weights: list[float]) -> list[float]:
    """Weighted isotonic (non-decreasing) least-squares fit by pooling adjacent violators."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights, strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            total = w1 + w2
            blocks.append([(v1 * w1 + v2 * w2) / total if total > 0 else (v1 + v2) / 2, total, c1 + c2])
    return [b[0] for b in blocks for _ in range(int(b[2]))]


def transitions(spec: PhaseTransitionSpec, cells: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per method and ``d``: the smallest ``n`` at which the success rate reaches half of its plateau.

    The rates over ``n`` are first smoothed by a monotone (isotonic) fit weighted by the trials run, so one
    noisy cell neither fakes nor hides the crossing; the plateau is the fit's largest value.
    """
    by_key = {cell_key(c): c for c in cells}
    out: dict[str, list[dict[str, Any]]] = {}
    for method in spec.methods:
        rows = []
        for d in spec.d:
            present = [by_key[(method, d, n)] for n in spec.n if (method, d, n) in by_key]
            if not present:
                continue
            fit = monotone_fit([c["success_rate"] for c in present], [max(c["trials_run"], 1) for c in present])
            plateau = max(fit)
            n_star = None
            if plateau > 0:
                n_star = next((c["n"] for c, f in zip(present, fit, strict=True) if f >= plateau / 2), None)
            rows.append({"d": d, "n": n_star, "plateau": plateau, "threshold": plateau / 2,
                         "at_grid_start": n_star is not None and n_star == present[0]["n"]})
        out[method] = rows
    return out


def assemble(spec: PhaseTransitionSpec, cells: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    """The experiment's result: every cell in grid order, and the transitions."""
    order = {cell_key(c): i for i, c in enumerate(
        {"method": m, "d": d, "n": n} for m in spec.methods for d in spec.d for n in spec.n)}
    cells = sorted(cells, key=lambda c: order[cell_key(c)])
    return {
        "kind": "phase_transition",
        "spec": spec.public(),
        "k": spec.k, "d": list(spec.d), "n": list(spec.n), "methods": list(spec.methods),
        "cells": cells,
        "transition": transitions(spec, cells),
        "time_s": elapsed,
        "cell_time_s": float(sum(c["time_s"] for c in cells)),
    }
