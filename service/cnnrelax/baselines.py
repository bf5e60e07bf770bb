"""Baselines the relaxation is compared with (SPEC 5): the pseudo-inverse and gradient descent.

- Pseudo-inverse (paper section 2.1, ``k = 1``): on the samples with a positive label,
  ``y_S = X_S w*`` holds exactly, so ``w_hat = X_S^+ y_S`` recovers ``w*`` once ``X_S`` has full column rank.
- Gradient descent on the non-convex loss from seeded random starts. It minimises the mean loss
  ``l(w) = 1/(2n) sum_i (y_i - sum_j (X_ij w)_+)^2 = L(w) / (2n)`` whose gradient is
  ``-(1/n) sum_i (y_i - f_w(x_i)) sum_{j : X_ij w > 0} X_ij``; on a fixed activation pattern its Hessian
  is at most ``k sigma_max(X_blocks)^2 / n`` (``X_blocks`` stacks the ``n*k`` patches), so the default
  step is ``1 / (k sigma_max(X_blocks)^2 / n)`` (SPEC 4b). The restart with the least loss is kept.
  With ``polish=True`` every restart's final filter is polished exactly as the relaxation's trials are
  (:func:`cnnrelax.trials.polish`: least squares on its activation pattern, kept when the loss drops), so
  the two methods can be compared at the same accuracy rather than at their iteration budgets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .problem import ConvProblem, FloatArray, InvalidParameterError
from .trials import polish as polish_filter

ShouldStop = Callable[[], bool]


def pseudo_inverse(problem: ConvProblem) -> FloatArray:
    """``w_hat = X_S^+ y_S`` with ``S = {i : y_i > 0}`` (single neuron, ``k = 1``, least squares)."""
    if problem.k != 1:
        raise InvalidParameterError(
            "k", f"The pseudo-inverse baseline needs k = 1 (a single neuron), got k={problem.k}: "
            "with several patches a positive label does not say which patches are active."
        )
    positive = problem.y > 0
    if not positive.any():
        raise InvalidParameterError(
            "y", "The pseudo-inverse baseline needs at least one positive label; every y_i is <= 0."
        )
    X_S = problem.patches[positive, 0, :]
    w, *_ = np.linalg.lstsq(X_S, problem.y[positive], rcond=None)
    return np.asarray(w, dtype=np.float64)


def lipschitz_constant(problem: ConvProblem) -> float:
    """``k sigma_max(X_blocks)^2 / n``: a bound on the mean loss's Hessian on any activation pattern."""
    blocks = problem.patches.reshape(-1, problem.m)
    sigma = float(np.linalg.norm(blocks, ord=2))
    return problem.k * sigma * sigma / problem.n


def mean_loss_gradient(problem: ConvProblem, w: FloatArray) -> FloatArray:
    """Gradient of ``l(w) = L(w)/(2n)``: ``-(1/n) sum_i (y_i - f_w(x_i)) sum_{j : X_ij w > 0} X_ij``."""
    pre = problem.preactivations(w)
    residual = problem.y - np.maximum(pre, 0.0).sum(axis=1)
    weights = (pre > 0) * residual[:, None]
    return -np.einsum("ik,ikm->m", weights, problem.patches) / problem.n


@dataclass(frozen=True)
class RestartRecord:
    """One gradient-descent restart: its start, where it ended, its loss and how many steps it took.

    As for the relaxation's trials, ``w``, ``raw_loss``, ``recovery_error`` and ``recovered`` speak of the
    descent's own filter, ``w_polished`` (null when polishing was off or did not lower the loss) and
    ``recovered_after_polish`` of the polished one; ``loss`` is the loss of :attr:`final_w`.
    """

    index: int
    w0: FloatArray
    w: FloatArray
    loss: float
    iterations: int
    converged: bool
    recovery_error: float | None = None
    recovered: bool | None = None
    w_polished: FloatArray | None = None
    raw_loss: float | None = None
    recovered_after_polish: bool | None = None

    @property
    def final_w(self) -> FloatArray:
        """The filter this restart offers for selection: polished when polishing helped."""
        return self.w_polished if self.w_polished is not None else self.w

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "w0": self.w0.tolist(), "w": self.w.tolist(),
            "w_polished": None if self.w_polished is None else self.w_polished.tolist(), "loss": self.loss,
            "raw_loss": self.raw_loss, "iterations": self.iterations, "converged": self.converged,
            "recovery_error": self.recovery_error, "recovered": self.recovered,
            "recovered_after_polish": self.recovered_after_polish,
        }


@dataclass(frozen=True)
class GradientDescentResult:
    """The restart with the least non-convex loss ``L(w)``, and every restart's record."""

    w: FloatArray
    loss: float
    selected_restart: int
    step: float
    restarts: list[RestartRecord] = field(default_factory=list)
    recovery_error: float | None = None
    solve_time_s: float = 0.0
    status: str = "solved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "w": self.w.tolist(), "loss": self.loss,
            "selected_restart": self.selected_restart, "step": self.step,
            "recovery_error": self.recovery_error, "solve_time_s": self.solve_time_s,
            "restarts": [r.to_dict() for r in self.restarts],
        }


def restart_start(seed: int, index: int, m: int) -> FloatArray:
    """Restart ``t`` starts at ``w0 ~ N(0, I_m / m)`` drawn from a generator seeded by ``(seed, t)``."""
    return np.random.default_rng([seed, index, 0x6D]).standard_normal(m) / np.sqrt(m)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidParameterError(name, f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def gradient_descent(
    problem: ConvProblem,
    *,
    restarts: int = 8,
    iterations: int = 2000,
    step: float | None = None,
    seed: int = 0,
    tol: float = 1e-12,
    stall_tol: float = 1e-10,
    w_star: FloatArray | None = None,
    recovery_tol: float = 1e-4,
    should_stop: ShouldStop | None = None,
    polish: bool = False,
) -> GradientDescentResult:
    """Run ``restarts`` seeded gradient descents on ``l(w) = L(w)/(2n)``, all at once, and keep the least loss.

    ``w <- w - step * grad l(w)``, default ``step = 1/L`` with ``L = k sigma_max(X_blocks)^2 / n``. A restart
    stops when ``L(w) <= tol * ||y||^2`` (a global minimum when the labels are fitted exactly), when its step
    moves ``w`` by at most ``stall_tol * (1 + ||w||)`` (a stationary point), or after ``iterations`` steps.

    Parameters
    ----------
    problem : ConvProblem
    restarts, iterations : int
        Seeded starts (run together as one batch) and the largest number of steps of each.
    step : float, optional
        Step size; ``1 / L`` by default.
    seed : int
        Seed of the starts (:func:`restart_start`).
    tol, stall_tol : float
        Relative loss at which a restart has converged; relative move below which it has stalled.
    w_star : array, optional
        A planted filter: each restart then reports its relative error and whether it is within ``recovery_tol``.
    recovery_tol : float
    should_stop : callable, optional
        Polled every 50 steps; the result's ``status`` is then ``cancelled``.
    polish : bool
        Polish every restart's final filter with :func:`cnnrelax.trials.polish` (as the relaxation's trials
        are) and select among the polished filters.

    Returns
    -------
    GradientDescentResult
        The restart of least loss (``w`` is its final, possibly polished, filter) and every restart's record.
    """
    restarts = _positive_int("restarts", restarts)
    iterations = _positive_int("iterations", iterations)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError("seed", f"seed must be a non-negative integer, got {seed!r}.")
    if not (np.isfinite(tol) and tol >= 0):
        raise InvalidParameterError("tol", f"tol must be a finite number >= 0, got {tol!r}.")
    if not (np.isfinite(stall_tol) and stall_tol >= 0):
        raise InvalidParameterError("stall_tol", f"stall_tol must be a finite number >= 0, got {stall_tol!r}.")
    if step is None:
        lipschitz = lipschitz_constant(problem)
        step = 1.0 / lipschitz if lipschitz > 0 else 1.0
    elif not (np.isfinite(step) and step > 0):
        raise InvalidParameterError("step", f"step must be a positive number, got {step!r}.")
    if w_star is not None:
        w_star = np.asarray(w_star, dtype=np.float64)
        if w_star.shape != (problem.m,):
            raise InvalidParameterError("w_star", f"w_star must have length m={problem.m}, got shape {w_star.shape}.")
    start = time.monotonic()
    n, m = problem.n, problem.m
    blocks = problem.patches.reshape(n * problem.k, m)
    y = problem.y
    threshold = tol * float(y @ y)
    W0 = np.stack([restart_start(seed, t, m) for t in range(restarts)], axis=1)  # (m, R)
    W = W0.copy()
    active = np.ones(restarts, dtype=bool)
    converged = np.zeros(restarts, dtype=bool)
    steps_taken = np.zeros(restarts, dtype=np.intp)
    status = "solved"
    for it in range(iterations):
        if should_stop is not None and it % 50 == 0 and should_stop():
            status = "cancelled"
            break
        cols = np.flatnonzero(active)
        if cols.size == 0:
            break
        Wa = W[:, cols]
        pre = (blocks @ Wa).reshape(n, problem.k, cols.size)
        residual = y[:, None] - np.maximum(pre, 0.0).sum(axis=1)  # (n, R)
        losses = np.einsum("ir,ir->r", residual, residual)
        done = losses <= threshold
        converged[cols[done]] = True
        weights = ((pre > 0) * residual[:, None, :]).reshape(n * problem.k, cols.size)
        grad = -(blocks.T @ weights) / n
        move = step * grad
        moved_little = np.linalg.norm(move, axis=0) <= stall_tol * (1.0 + np.linalg.norm(Wa, axis=0))
        keep = ~done & ~moved_little
        W[:, cols[keep]] = Wa[:, keep] - move[:, keep]
        steps_taken[cols[keep]] += 1
        active[cols[~keep]] = False
    records: list[RestartRecord] = []
    star_norm = 1.0 if w_star is None else max(float(np.linalg.norm(w_star)), float(np.finfo(float).tiny))
    for t in range(restarts):
        w = W[:, t].copy()
        raw_loss = loss = problem.loss(w)
        w_polished = None
        if polish and status != "cancelled":
            outcome = polish_filter(problem, w)
            if outcome.accepted:
                w_polished = outcome.w
                loss = problem.loss(w_polished)
        error = recovered = recovered_after_polish = None
        if w_star is not None:
            error = float(np.linalg.norm(w - w_star) / star_norm)
            recovered = bool(error <= recovery_tol)
            final = w if w_polished is None else w_polished
            recovered_after_polish = bool(float(np.linalg.norm(final - w_star) / star_norm) <= recovery_tol)
        records.append(RestartRecord(t, W0[:, t].copy(), w, loss, int(steps_taken[t]),
                                     bool(converged[t] or raw_loss <= threshold), error, recovered,
                                     w_polished=w_polished, raw_loss=raw_loss,
                                     recovered_after_polish=recovered_after_polish))
    best = min(records, key=lambda rec: rec.loss)
    best_error = None
    if w_star is not None:
        best_error = float(np.linalg.norm(best.final_w - w_star) / star_norm)
    return GradientDescentResult(
        w=best.final_w, loss=best.loss, selected_restart=best.index, step=float(step), restarts=records,
        recovery_error=best_error, solve_time_s=time.monotonic() - start, status=status,
    )
