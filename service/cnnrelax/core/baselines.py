"""Baselines the relaxation is compared with (SPEC 5): the pseudo-inverse and gradient descent, per activation.

The network predicts ``f_w(x_i) = sum_j sigma(X_ij w)`` for the problem's activation ``sigma``
(:mod:`cnnrelax.core.activations`).

- Pseudo-inverse (paper section 2.1, ``k = 1``): where ``sigma`` can be inverted on a known set of samples,
  ``sigma^-1(y_S) = X_S w*`` holds exactly, so ``w_hat = X_S^+ sigma^-1(y_S)`` recovers ``w*`` once ``X_S``
  has full column rank. ReLU: ``S = {y_i > 0}`` and ``sigma^-1(y) = y``; leaky ReLU with slope ``a``: every
  sample, ``sigma^-1(y) = y`` for ``y > 0`` and ``y / a`` otherwise (the label's sign is the pattern);
  squared ReLU: ``S = {y_i > 0}``, ``sigma^-1(y) = sqrt(y)``; softplus: every sample,
  ``sigma^-1(y) = log(e^y - 1)``. The absolute value has none: ``|u| = y`` leaves the sign of every ``u``
  unknown (phase retrieval), so the baseline refuses it.
- Gradient descent on the non-convex loss from seeded random starts. It minimises the mean loss
  ``l(w) = 1/(2n) sum_i (y_i - f_w(x_i))^2 = L(w) / (2n)`` whose gradient is
  ``grad l(w) = -(1/n) sum_i (y_i - f_w(x_i)) g_i(w)`` with ``g_i(w) = sum_j sigma'(X_ij w) X_ij``
  (:meth:`cnnrelax.core.problem.ConvProblem.gradient_rows`; at a kink the subgradient ``lo``). The step size:

  * piecewise linear (``relu``, ``leaky_relu``, ``absolute``: ``sigma(u) = max(lo u, hi u)``): on a fixed
    activation pattern ``f_w(x_i) = g_i^T w`` is linear in ``w``, ``g_i = sum_j s_ij X_ij`` with
    ``s_ij in {lo, hi}``, and the Hessian of ``l`` is ``(1/n) sum_i g_i g_i^T``. By Cauchy-Schwarz
    ``(g_i^T v)^2 <= k sum_j s_ij^2 (X_ij^T v)^2 <= k s^2 sum_j (X_ij^T v)^2`` with ``s = max(|lo|, |hi|)``,
    so the Hessian is at most ``k s^2 sigma_max(X_blocks)^2 / n`` (``X_blocks`` stacks the ``n*k``
    patches) and the default step is its inverse (SPEC 4b). ``s = 1`` for all three, so the constant is
    ReLU's (whose descent is unchanged, to the bit).
  * smooth (``squared_relu``, ``softplus``): no such bound holds. The Hessian
    ``(1/n) sum_i (g_i g_i^T - (y_i - f_w(x_i)) sum_j sigma''(X_ij w) X_ij X_ij^T)`` grows with ``||w||^2``
    for the squared ReLU (``sigma'' = 2`` on active patches, ``g_i`` is linear in ``w``: the loss is quartic)
    and with the residuals for softplus (``sigma'' <= 1/4``). Each restart therefore takes a backtracking
    (Armijo) line search: from a trial step ``t`` (the previous accepted step times 2; the first is the
    piecewise-linear constant's inverse), ``t`` is halved until the sufficient-decrease condition
    ``l(w - t grad l(w)) <= l(w) - c t ||grad l(w)||^2`` holds, with ``c = 1/2``. Because ``l`` is
    continuously differentiable, the condition holds for every small enough ``t``, so the search ends
    (Armijo 1966; Nocedal & Wright, *Numerical Optimization*, section 3.1); every accepted step lowers
    ``l``, and any limit point of the iterates is stationary. A restart whose step falls below ``1e-30``
    times the start's has stalled.

  The restart with the least loss is kept. With ``polish=True`` every restart's final filter is polished
  exactly as the relaxation's trials are (:func:`cnnrelax.core.trials.polish`, per activation), so the two
  methods can be compared at the same accuracy rather than at their iteration budgets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidParameterError
from ..types import ShouldStop
from ..validation import non_negative_integer, positive_integer
from .activations import Activation
from .passes import patch_factor, weighted_sum
from .polishing import polish as polish_filter
from .problem import ConvProblem, FloatArray
from .tolerances import DEFAULT_RECOVERY_TOL, GD_STALL_TOL, GD_TOL
from .trials import recovery


def pseudo_inverse(problem: ConvProblem) -> FloatArray:
    """``w_hat = X_S^+ sigma^-1(y_S)`` (single neuron, ``k = 1``, least squares), per activation.

    ReLU and squared ReLU: ``S = {i : y_i > 0}`` (``y`` and ``sqrt(y)``); leaky ReLU: every sample, each label
    divided by the slope its sign implies; softplus: every sample, ``log(e^y - 1)``. The absolute value is
    refused (a label ``|u|`` does not say the sign of ``u``).

    Parameters
    ----------
    problem : ConvProblem
        A problem with ``k = 1``.

    Returns
    -------
    ndarray
        The least-squares filter of length ``m``.
    """
    if problem.k != 1:
        raise InvalidParameterError(
            "k", f"The pseudo-inverse baseline needs k = 1 (a single neuron), got k={problem.k}: "
            "with several patches a positive label does not say which patches are active."
        )
    rows, targets = problem.activation.inverse_targets(problem.y)
    if not rows.any():
        raise InvalidParameterError(
            "y", "The pseudo-inverse baseline needs at least one positive label; every y_i is <= 0."
        )
    # Least squares over the rows of S only: the other rows enter with weight 0 and target 0 (zero rows of
    # [G | t] change neither the residual nor the minimum-norm solution), streamed (ConvProblem.gradient_factor).
    selected = rows.astype(np.float64)[:, None]
    return problem.gradient_factor(selected, np.where(rows, targets, 0.0)).solve()


def lipschitz_constant(problem: ConvProblem) -> float:
    """``k s^2 sigma_max(X_blocks)^2 / n``: a bound on the mean loss's Hessian on any activation pattern.

    ``s = max(|lo|, |hi|)`` is the largest slope of a piecewise-linear activation (1 for ReLU, leaky ReLU and
    the absolute value). For the smooth activations no such bound exists; the same number (with ``s = 1``)
    then only scales the line search's first trial step.

    Parameters
    ----------
    problem : ConvProblem

    Returns
    -------
    float
        The bound (0 when every patch is zero).
    """
    # sigma_max of the n*k patches stacked = that of their triangular factor (one streamed pass, no Gram matrix).
    sigma = float(np.linalg.norm(problem.source.reduce_rows(patch_factor).R, ord=2))
    bound = problem.k * sigma * sigma / problem.n
    slope = problem.activation.slope_bound
    if slope is not None:
        bound *= slope * slope
    return bound


def mean_loss_gradient(problem: ConvProblem, w: FloatArray) -> FloatArray:
    """Gradient of ``l(w) = L(w)/(2n)``: ``-(1/n) sum_i (y_i - f_w(x_i)) sum_j sigma'(X_ij w) X_ij``.

    Parameters
    ----------
    problem : ConvProblem
    w : ndarray
        A filter of length ``m``.

    Returns
    -------
    ndarray
        The gradient (at a kink of a piecewise-linear activation, the subgradient with slope ``lo`` there).
    """
    pre = problem.preactivations(w)
    residual = problem.y - problem.activation.value(pre).sum(axis=1)
    weights = problem.activation.derivative(pre) * residual[:, None]
    out: FloatArray = -problem.source.reduce_rows(weighted_sum, weights) / problem.n
    return out


def _restart_losses(patches: FloatArray, y: FloatArray, W: FloatArray, activation: Activation) -> FloatArray:
    """Kernel: each column's ``sum_i (y_i - f_w(x_i))^2`` over the block (a reduction, ``(R,)``)."""
    b, k, m = patches.shape
    pre = (patches.reshape(b * k, m) @ W).reshape(b, k, W.shape[1])
    residual = y[:, None] - activation.value(pre).sum(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        losses: FloatArray = np.einsum("ir,ir->r", residual, residual)
    return losses


def _restart_moments(patches: FloatArray, y: FloatArray, W: FloatArray,
                     activation: Activation) -> tuple[FloatArray, FloatArray]:
    """Kernel: each column's loss over the block and ``sum_i (y_i - f_w(x_i)) g_i(w)`` (a reduction:
    ``(R,)`` and ``(m, R)``)."""
    b, k, m = patches.shape
    flat = patches.reshape(b * k, m)
    pre = (flat @ W).reshape(b, k, W.shape[1])
    residual = y[:, None] - activation.value(pre).sum(axis=1)  # (b, R)
    losses: FloatArray = np.einsum("ir,ir->r", residual, residual)
    weights = (activation.derivative(pre) * residual[:, None, :]).reshape(b * k, W.shape[1])
    moments: FloatArray = flat.T @ weights
    return losses, moments


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
    start: FloatArray = np.random.default_rng([seed, index, 0x6D]).standard_normal(m) / np.sqrt(m)
    return start


ARMIJO_C = 0.5
ARMIJO_HALVINGS = 100  # 2^-100 ~ 8e-31: a restart whose step falls that far has stalled


def _armijo(problem: ConvProblem, W: FloatArray, grad: FloatArray, losses: FloatArray,
            trial: FloatArray, search: NDArray[np.bool_]) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Backtracking line search for each column of ``W`` (one restart each), all at once.

    Halves each column's trial step until ``L(w - t g) <= L(w) - 2 n c t ||g||^2`` (Armijo's condition on
    ``l = L / (2n)`` with ``c = ARMIJO_C``); a non-finite trial loss fails the test. Columns outside
    ``search`` are left alone.

    Returns
    -------
    (accepted steps, stalled): ``stalled`` marks columns whose step fell ``ARMIJO_HALVINGS`` halvings short.
    """
    n = problem.n
    t = trial.astype(np.float64, copy=True)
    gg = np.einsum("mr,mr->r", grad, grad)
    pending = search.copy()
    for _ in range(ARMIJO_HALVINGS):
        idx = np.flatnonzero(pending)
        if idx.size == 0:
            break
        Wt = W[:, idx] - grad[:, idx] * t[idx][None, :]
        trial_losses = problem.source.reduce_rows(partial(_restart_losses, W=Wt, activation=problem.activation),
                                                  problem.y)
        with np.errstate(over="ignore", invalid="ignore"):
            ok = trial_losses <= losses[idx] - 2.0 * n * ARMIJO_C * t[idx] * gg[idx]
        pending[idx[ok]] = False
        t[idx[~ok]] *= 0.5
    return t, pending


def _checked(problem: ConvProblem, restarts: int, iterations: int, step: float | None, seed: int, tol: float,
             stall_tol: float) -> tuple[int, int, float, bool]:
    """The descent's arguments checked; the step (``1/L`` by default) and whether a line search runs."""
    restarts = positive_integer("restarts", restarts)
    iterations = positive_integer("iterations", iterations)
    non_negative_integer("seed", seed)
    if not (np.isfinite(tol) and tol >= 0):
        raise InvalidParameterError("tol", f"tol must be a finite number >= 0, got {tol!r}.")
    if not (np.isfinite(stall_tol) and stall_tol >= 0):
        raise InvalidParameterError("stall_tol", f"stall_tol must be a finite number >= 0, got {stall_tol!r}.")
    line_search = step is None and not problem.activation.piecewise_linear
    if step is None:
        lipschitz = lipschitz_constant(problem)
        step = 1.0 / lipschitz if lipschitz > 0 else 1.0
    elif not (np.isfinite(step) and step > 0):
        raise InvalidParameterError("step", f"step must be a positive number, got {step!r}.")
    return restarts, iterations, float(step), line_search


def _descend(problem: ConvProblem, W0: FloatArray, iterations: int, step: float, line_search: bool,
             threshold: float, stall_tol: float, should_stop: ShouldStop | None
             ) -> tuple[FloatArray, np.ndarray, np.ndarray, str]:
    """Every restart (a column of ``W0``) at once until it converges, stalls or runs out of iterations.

    Returns the final filters, the steps each took, which converged, and the status (``cancelled`` or ``solved``).
    """
    n, restarts = problem.n, W0.shape[1]
    W = W0.copy()
    active = np.ones(restarts, dtype=bool)
    converged = np.zeros(restarts, dtype=bool)
    steps_taken = np.zeros(restarts, dtype=np.intp)
    steps = np.full(restarts, float(step))  # line search: each restart's next trial step
    for it in range(iterations):
        if should_stop is not None and it % 50 == 0 and should_stop():
            return W, steps_taken, converged, "cancelled"
        cols = np.flatnonzero(active)
        if cols.size == 0:
            break
        Wa = W[:, cols]
        losses, moments = problem.source.reduce_rows(
            partial(_restart_moments, W=Wa, activation=problem.activation), problem.y)
        done = losses <= threshold
        converged[cols[done]] = True
        grad = -moments / n
        if line_search:
            trial = steps[cols]
            accepted, stalled = _armijo(problem, Wa, grad, losses, trial, ~done)
            steps[cols] = np.where(stalled, trial, 2.0 * accepted)
            move = grad * accepted[None, :]
        else:
            stalled = np.zeros(cols.size, dtype=bool)
            move = step * grad
        moved_little = np.linalg.norm(move, axis=0) <= stall_tol * (1.0 + np.linalg.norm(Wa, axis=0))
        keep = ~done & ~moved_little & ~stalled
        W[:, cols[keep]] = Wa[:, keep] - move[:, keep]
        steps_taken[cols[keep]] += 1
        active[cols[~keep]] = False
    return W, steps_taken, converged, "solved"


def _restart_record(problem: ConvProblem, t: int, w0: FloatArray, w: FloatArray, steps: int, converged: bool,
                    threshold: float, polish: bool, w_star: FloatArray | None, recovery_tol: float) -> RestartRecord:
    """Restart ``t``'s record: its loss, its polished filter (when asked for and it helped), its recovery."""
    raw_loss = loss = problem.loss(w)
    w_polished = None
    if polish:
        outcome = polish_filter(problem, w)
        if outcome.accepted:
            w_polished, loss = outcome.w, outcome.loss
    error = recovered = recovered_after_polish = None
    if w_star is not None:
        error = recovery(problem, w, w_star)[0]
        recovered = bool(error <= recovery_tol)
        final = w if w_polished is None else w_polished
        recovered_after_polish = bool(recovery(problem, final, w_star)[0] <= recovery_tol)
    return RestartRecord(t, w0, w, loss, steps, bool(converged or raw_loss <= threshold), error, recovered,
                         w_polished=w_polished, raw_loss=raw_loss, recovered_after_polish=recovered_after_polish)


def gradient_descent(
    problem: ConvProblem,
    *,
    restarts: int = 8,
    iterations: int = 2000,
    step: float | None = None,
    seed: int = 0,
    tol: float = GD_TOL,
    stall_tol: float = GD_STALL_TOL,
    w_star: FloatArray | None = None,
    recovery_tol: float = DEFAULT_RECOVERY_TOL,
    should_stop: ShouldStop | None = None,
    polish: bool = False,
) -> GradientDescentResult:
    """Run ``restarts`` seeded gradient descents on ``l(w) = L(w)/(2n)``, all at once, and keep the least loss.

    ``w <- w - step * grad l(w)``, default ``step = 1/L`` with ``L = k s^2 sigma_max(X_blocks)^2 / n``
    (:func:`lipschitz_constant`) for the piecewise-linear activations; for the smooth ones (squared ReLU,
    softplus) the default is a backtracking (Armijo) line search per restart starting from ``1/L`` (module
    docstring), and an explicit ``step`` is a fixed step for every activation. A restart stops when
    ``L(w) <= tol * ||y||^2`` (a global minimum when the labels are fitted exactly), when its step
    moves ``w`` by at most ``stall_tol * (1 + ||w||)`` (a stationary point), or after ``iterations`` steps.

    Parameters
    ----------
    problem : ConvProblem
    restarts, iterations : int
        Seeded starts (run together as one batch) and the largest number of steps of each.
    step : float, optional
        Fixed step size; by default ``1 / L`` (piecewise linear) or a line search starting there (smooth).
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
        Polish every restart's final filter with :func:`cnnrelax.core.trials.polish` (as the relaxation's trials
        are) and select among the polished filters.

    Returns
    -------
    GradientDescentResult
        The restart of least loss (``w`` is its final, possibly polished, filter) and every restart's record;
        its ``step`` is the fixed step, or the line search's first trial step.
    """
    restarts, iterations, step, line_search = _checked(problem, restarts, iterations, step, seed, tol, stall_tol)
    if w_star is not None:
        w_star = np.asarray(w_star, dtype=np.float64)
        if w_star.shape != (problem.m,):
            raise InvalidParameterError("w_star", f"w_star must have length m={problem.m}, got shape {w_star.shape}.")
    start = time.monotonic()
    W0 = np.stack([restart_start(seed, t, problem.m) for t in range(restarts)], axis=1)  # (m, R)
    W, steps_taken, converged, status = _descend(problem, W0, iterations, step, line_search,
                                                 tol * float(problem.y @ problem.y), stall_tol, should_stop)
    records = [_restart_record(problem, t, W0[:, t].copy(), W[:, t].copy(), int(steps_taken[t]), bool(converged[t]),
                               tol * float(problem.y @ problem.y), polish and status != "cancelled", w_star,
                               recovery_tol)
               for t in range(restarts)]
    best = min(records, key=lambda rec: rec.loss)
    best_error = None
    if w_star is not None:
        best_error = recovery(problem, best.final_w, w_star)[0]
    return GradientDescentResult(
        w=best.final_w, loss=best.loss, selected_restart=best.index, step=float(step), restarts=records,
        recovery_error=best_error, solve_time_s=time.monotonic() - start, status=status,
    )
