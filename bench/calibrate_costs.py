"""Calibrate the cost model (``cnnrelax.pricing``) on this machine and write its coefficients as data.

Each unit of work the estimators count (a relaxation trial, a coverage direction, a gradient-descent restart, a
planted draw, a pseudo-inverse, image rotations, a ridge fit, activation features) is timed in CPU-seconds
(``time.process_time``: this process's CPU, all its threads) at a few sizes, and its linear cost over the
unit's features (``cnnrelax.pricing.FEATURES``) is fitted by non-negative least squares on relative errors.
The relaxations' and activations' factors are ratios against the LP with ReLU at one size. Then a few whole jobs
are run in process and their measured CPU compared with the estimate (``checks`` in the file).

    nice python bench/calibrate_costs.py                      # writes service/cnnrelax/pricing/costs.json
    python bench/calibrate_costs.py --out /tmp/costs.json --quick
    python bench/calibrate_costs.py --estimates               # prices the issue's and the README's jobs

It takes about two minutes of CPU (``--quick``: about half). Timings on a shared machine are noisy: the fit
uses the least of ``--repeat`` runs of each point (noise only ever adds time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.optimize import nnls
from threadpoolctl import threadpool_limits

from cnnrelax.core.activations import make_activation
from cnnrelax.core.baselines import gradient_descent, pseudo_inverse
from cnnrelax.core.certificates import coverage
from cnnrelax.core.planted import PlantedSpec, planted_problem
from cnnrelax.experiments import run_experiment
from cnnrelax.experiments.rotated_digits import DigitsData, Split, _rotate, relu_features, ridge_test_rmse
from cnnrelax.experiments.specs import DEFAULT_ALPHAS, DEFAULT_GD_ITERATIONS, DEFAULT_GD_TOL, parse_experiment_spec
from cnnrelax.jobs import run_solve_job
from cnnrelax.pricing import COSTS_PATH, FEATURES, estimate_cost, parse_coefficients
from cnnrelax.specs import SolveSpec

#: Every estimate is multiplied by this: the fits are least-of-runs on an idle-ish machine, jobs run beside others.
SAFETY_FACTOR = 1.25
#: Each unit's fitted cost is raised to bound this quantile of its measured / fitted ratios.
ENVELOPE_QUANTILE = 0.75


def cpu(repeat: int, run: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """The least CPU-seconds of ``repeat`` runs of ``run(*args, **kwargs)``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        run(*args, **kwargs)
        best = min(best, time.process_time() - start)
    return best


def fit(unit: str, rows: list[tuple[dict[str, float], float]]) -> dict[str, Any]:
    """Non-negative least squares of measured CPU-seconds on the unit's features, raised to an envelope.

    Three weightings of the rows are tried (absolute, 1/sqrt(t), relative 1/t); each fit is raised by its envelope
    (the ``ENVELOPE_QUANTILE`` of measured / fitted, at least 1), and the one whose 90th-percentile ratio stays
    closest above the envelope is kept (the tightest bound on most points).
    """
    names = FEATURES[unit]
    A = np.array([[features[name] for name in names] for features, _ in rows], dtype=np.float64)
    t = np.array([seconds for _, seconds in rows], dtype=np.float64)
    scale = np.maximum(np.abs(A).max(axis=0), 1e-300)  # columns of comparable size for NNLS
    best: tuple[float, str, np.ndarray, np.ndarray, float] | None = None
    for weighting, weights in (("absolute", np.ones_like(t)), ("sqrt", 1.0 / np.sqrt(np.maximum(t, 1e-6))),
                               ("relative", 1.0 / np.maximum(t, 1e-6))):
        coef, _ = nnls((A / scale) * weights[:, None], t * weights)
        coef = coef / scale
        ratios = t / np.maximum(A @ coef, 1e-12)
        envelope = max(1.0, float(np.quantile(ratios, ENVELOPE_QUANTILE)))
        spread = float(np.quantile(ratios, 0.9)) / envelope
        if best is None or spread < best[0]:
            best = (spread, weighting, coef * envelope, ratios / envelope, envelope)
    assert best is not None
    _, weighting, coef, ratios, envelope = best
    print(f"{unit}: {weighting} weights, envelope {envelope:.2f}, coef {dict(zip(names, coef.tolist(), strict=True))}; "
          f"measured/model {ratios.min():.2f} .. {ratios.max():.2f}", flush=True)
    return {"coef": dict(zip(names, coef.tolist(), strict=True)), "weighting": weighting,
            "envelope": round(envelope, 3),
            "measured_over_model": [round(float(ratios.min()), 3), round(float(ratios.max()), 3)],
            "points": [{**features, "cpu_s": round(seconds, 6)} for features, seconds in rows]}


def solve_cpu(members: dict[str, Any], repeat: int) -> float:
    spec = SolveSpec.model_validate(members)
    return cpu(repeat, run_solve_job, spec, None, None)


def calibrate(quick: bool, repeat: int) -> dict[str, Any]:
    solve_cpu({"planted": {"n": 40, "d": 4, "k": 2}, "trials": 1}, 1)  # warm-up: imports, first solves
    costs: dict[str, Any] = {}
    trials = 2
    ns = (300, 1500, 6000) if not quick else (300, 3000)
    shapes = ((1, 10), (1, 30), (1, 60), (2, 20), (5, 12)) if not quick else ((1, 10), (1, 40), (2, 20))
    rows = []
    for n in ns:
        for k, m in shapes + (((1, 80), (2, 40), (5, 16)) if n == ns[-1] else ()):
            seconds = solve_cpu({"planted": {"n": n, "d": k * m, "k": k, "seed": 1}, "trials": trials,
                                 "coverage_samples": 0, "stop_on_certificate": False}, repeat) / trials
            E = n * k * m
            rows.append(({"1": 1.0, "E": E, "E*m": E * m, "m*r^2": m * min(m, n * k) ** 2}, seconds))
    for n, k, m in ((25000, 1, 20), (100000, 1, 20)) if not quick else ((50000, 1, 20),):  # large n: the passes
        seconds = solve_cpu({"planted": {"n": n, "d": k * m, "k": k, "seed": 1}, "trials": trials,
                             "coverage_samples": 0, "stop_on_certificate": False}, 1) / trials
        E = n * k * m
        rows.append(({"1": 1.0, "E": E, "E*m": E * m, "m*r^2": m * min(m, n * k) ** 2}, seconds))
    costs["relaxation_trial"] = fit("relaxation_trial", rows)

    rows = []
    for n in (500, 4000, 20000, 60000):
        for k, m in ((1, 10), (1, 40), (2, 20), (1, 80)) if n < 20000 else ((1, 20), (2, 10)):
            drawn = planted_problem(PlantedSpec(n=n, d=k * m, k=k, seed=2))
            samples = 30 if n < 20000 else 5
            seconds = cpu(repeat, coverage, drawn.problem, drawn.w_star, samples=samples) / samples
            rows.append(({"1": 1.0, "E": n * k * m, "n*m^2": n * m * m, "n^2*m": n * n * m}, seconds))
    costs["coverage_sample"] = fit("coverage_sample", rows)

    rows = []
    for n, d, k in ((40, 10, 1), (200, 20, 1), (2000, 40, 1), (5000, 80, 1), (2000, 40, 2)):
        drawn = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=3, noise_std=0.3))
        for iterations in (50, 400):
            seconds = cpu(repeat, gradient_descent, drawn.problem, restarts=1, iterations=iterations, seed=3,
                          tol=1e-300, stall_tol=0.0, w_star=drawn.w_star, polish=True)
            rows.append(({"1": 1.0, "n*d": n * d, "it": iterations, "E*it": n * d * iterations}, seconds))
    costs["gd_restart"] = fit("gd_restart", rows)

    rows = []  # restarts as the phase transition runs them: default tolerance, step and budget, planted data
    for n in (40, 160, 640, 2560, 5120):
        for d, k in ((20, 1), (80, 1), (40, 2), (80, 5)):
            drawn = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=9))
            seconds = cpu(1, gradient_descent, drawn.problem, restarts=1, iterations=DEFAULT_GD_ITERATIONS, seed=9,
                          tol=DEFAULT_GD_TOL, w_star=drawn.w_star, polish=True)
            rows.append(({"1": 1.0, "n*d": n * d, "E*m": n * d * (d // k)}, seconds))
    costs["gd_restart_default"] = fit("gd_restart_default", rows)

    rows = []
    for n, d in ((1000, 20), (5000, 80), (20000, 50)):
        seconds = cpu(repeat, planted_problem, PlantedSpec(n=n, d=d, k=1, seed=4))
        rows.append(({"1": 1.0, "n*d": n * d}, seconds))
    costs["planted_draw"] = fit("planted_draw", rows)

    rows = []
    for n, m in ((1000, 20), (5000, 80), (20000, 50)):
        drawn = planted_problem(PlantedSpec(n=n, d=m, k=1, seed=5))
        seconds = cpu(repeat, pseudo_inverse, drawn.problem)
        rows.append(({"1": 1.0, "n*m^2": n * m * m}, seconds))
    costs["pseudo_inverse"] = fit("pseudo_inverse", rows)

    rng = np.random.default_rng(6)
    rows = []
    for count, side in ((100, 8), (400, 8), (100, 28), (300, 28)):
        images = rng.random((count, side, side))
        angles = rng.uniform(-45, 45, size=(count, 1))
        seconds = cpu(repeat, _rotate, images, angles)
        rows.append(({"1": 1.0, "images": count, "images*pixels": count * side * side}, seconds))
    costs["rotation"] = fit("rotation", rows)

    rows = []
    alphas = list(DEFAULT_ALPHAS)
    with threadpool_limits(limits=1, user_api="blas"):
        for samples, cols in ((2000, 64), (3000, 400), (4000, 1000), (1500, 1500)):
            X = rng.standard_normal((samples, cols))
            y = rng.standard_normal(samples)
            cut = (int(0.6 * samples), int(0.8 * samples))
            parts = [Split(X[a:b], y[a:b], np.arange(b - a)) for a, b in ((0, cut[0]), cut, (cut[1], samples))]
            data = DigitsData(parts[0], parts[1], parts[2], image_shape=(1, cols), source="random", images=samples)
            fitted = cut[1]
            seconds = cpu(repeat, ridge_test_rmse, [p.X for p in parts], data, alphas)
            rows.append(({"1": 1.0, "rows*cols^2": fitted * cols * cols, "alphas*cols^3": len(alphas) * cols ** 3,
                          "alphas*rows*cols": len(alphas) * fitted * cols}, seconds))
    costs["ridge"] = fit("ridge", rows)

    rows = []
    relu = make_activation("relu")
    for samples, side, p, filters in ((2000, 8, 4, 2), (1000, 28, 5, 2), (3000, 28, 3, 1)):
        X = rng.standard_normal((samples, side * side))
        units = [rng.standard_normal(p * p) for _ in range(filters)]
        seconds = cpu(repeat, relu_features, X, (side, side), (p, p), units, relu)
        patches = (side - p + 1) ** 2
        rows.append(({"1": 1.0, "rows*patches*entries*filters": samples * patches * p * p * filters}, seconds))
    costs["features"] = fit("features", rows)

    # Factors against the LP with ReLU, at one size (the baseline timed before and after, averaged).
    base_members = {"planted": {"n": 800, "d": 20, "k": 2, "seed": 7}, "trials": 3, "coverage_samples": 0,
                    "stop_on_certificate": False}
    before = solve_cpu(base_members, repeat)
    relaxation_time = {name: solve_cpu({**base_members, "relaxation": name}, repeat) for name in ("qp", "naive")}
    activation_time = {name: solve_cpu({**base_members, "activation": name}, repeat)
                       for name in ("leaky_relu", "absolute", "squared_relu", "softplus")}
    baseline = (before + solve_cpu(base_members, repeat)) / 2
    relaxation_factor = {"lp": 1.0, **{k: round(v / baseline, 3) for k, v in relaxation_time.items()}}
    activation_factor = {"relu": 1.0, **{k: round(v / baseline, 3) for k, v in activation_time.items()}}
    drawn = {name: planted_problem(PlantedSpec(n=1000, d=20, k=1, seed=8, noise_std=0.3, activation=name))
             for name in ("relu", "leaky_relu", "absolute", "squared_relu", "softplus")}
    gd_time = {name: cpu(repeat, gradient_descent, pp.problem, restarts=1, iterations=200, seed=8, tol=1e-300,
                         stall_tol=0.0, w_star=pp.w_star, polish=True) for name, pp in drawn.items()}
    # At least 1: a smaller ratio means a restart stopped early (stalled), which a job's restart need not.
    gd_activation_factor = {k: round(max(1.0, v / gd_time["relu"]), 3) for k, v in gd_time.items()}
    print("relaxation factors", relaxation_factor, "activation factors", activation_factor,
          "gradient-descent factors", gd_activation_factor, flush=True)
    return {"costs": costs, "relaxation_factor": relaxation_factor, "activation_factor": activation_factor,
            "gd_activation_factor": gd_activation_factor, "safety_factor": SAFETY_FACTOR}


#: Whole jobs run in process after the fit: their measured CPU beside the estimate.
CHECK_JOBS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("solve README (planted n=500 d=20 k=2, 8 trials, stop on certificate)",
     {"planted": {"n": 500, "d": 20, "k": 2, "seed": 0}, "trials": 8, "seed": 0}),
    ("solve n=3000 d=40 k=2, 4 trials run, 64 coverage directions",
     {"planted": {"n": 3000, "d": 40, "k": 2, "seed": 1}, "trials": 4, "stop_on_certificate": False}),
    ("solve n=2000 d=50 k=1 qp, 3 trials run",
     {"planted": {"n": 2000, "d": 50, "k": 1, "seed": 2, "noise_std": 0.01}, "relaxation": "qp", "trials": 3,
      "stop_on_certificate": False, "coverage_samples": 0}),
    ("phase transition k=1 d=[10,40] n=[40,320,1280] R=2, both methods",
     {"kind": "phase_transition", "k": 1, "d": [10, 40], "n": [40, 320, 1280], "repetitions": 2}),
    ("rotated digits 8x8, 1 seed, 1 filter",
     {"kind": "rotated_digits", "seeds": 1, "filters": 1}),
)


def run_checks() -> list[dict[str, Any]]:
    checks = []
    for label, members in CHECK_JOBS:
        if "kind" in members:
            spec = parse_experiment_spec(members)
            estimate = estimate_cost(spec).cpu_s
            seconds = cpu(1, run_experiment, spec, progress=lambda *a: None, should_stop=lambda: False)
        else:
            solve = SolveSpec.model_validate(members)
            estimate = estimate_cost(solve, solve.size(None)).cpu_s
            seconds = cpu(1, run_solve_job, solve, None, None)
        checks.append({"job": label, "estimated_cpu_s": round(estimate, 4), "measured_cpu_s": round(seconds, 4),
                       "measured_over_estimate": round(seconds / estimate, 3)})
        print(f"check: {label}: estimate {estimate:.3f} s, measured {seconds:.3f} s "
              f"(ratio {seconds / estimate:.2f})", flush=True)
    return checks


#: The jobs the issue and the README name, priced by ``--estimates`` (nothing is run).
PRICED_JOBS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("README solve (planted n=500 d=20 k=2, 8 trials)", {"planted": {"n": 500, "d": 20, "k": 2, "seed": 0},
                                                          "trials": 8, "seed": 0}),
    ("default phase transition (k=1, 20 repetitions)", {"kind": "phase_transition"}),
    *((f"paper grid k={k} (repetitions 100, both methods)", {"kind": "phase_transition", "k": k, "repetitions": 100})
      for k in (1, 2, 5)),
    ("default rotated digits (8x8)", {"kind": "rotated_digits"}),
    ("issue 16 bomb: phase transition 10,000 repetitions x 1000 trials",
     {"kind": "phase_transition", "k": 1, "d": [2], "n": [8], "repetitions": 10000, "trials": 1000}),
    ("issue 16 bomb: planted solve n*d = 2e7, 1000 trials, 10,000 coverage samples",
     {"planted": {"n": 1_000_000, "d": 20}, "trials": 1000, "coverage_samples": 10000}),
)


def print_estimates() -> None:
    """The estimates of :data:`PRICED_JOBS` and of MNIST-sized stored images, from the package's coefficients."""
    for label, members in PRICED_JOBS:
        if "kind" in members:
            estimate = estimate_cost(parse_experiment_spec(members))
        else:
            spec = SolveSpec.model_validate(members)
            estimate = estimate_cost(spec, spec.size(None))
        print(f"{estimate.cpu_s:12.1f} CPU-s  {label}")
    stored = parse_experiment_spec({"kind": "rotated_digits", "images_dataset_id": "0" * 64})
    for count in (5000, 8000):
        estimate = estimate_cost(stored.with_dataset((28, 28), count, False))
        print(f"{estimate.cpu_s:12.1f} CPU-s  rotated digits on {count} stored images of 28x28 (defaults)")


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"node": platform.node(), "cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "load_average": [round(v, 2) for v in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=COSTS_PATH, help="Where to write the coefficients (JSON).")
    parser.add_argument("--quick", action="store_true", help="Fewer sizes (about half the time).")
    parser.add_argument("--repeat", type=int, default=2, help="Runs of each point; the least is kept.")
    parser.add_argument("--no-checks", action="store_true", help="Skip the whole-job checks.")
    parser.add_argument("--estimates", action="store_true",
                        help="Measure nothing: print the estimates of the issue's and the README's jobs.")
    args = parser.parse_args()
    if args.estimates:
        print_estimates()
        return
    started = time.process_time()
    data = calibrate(args.quick, args.repeat)
    data.update(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), machine=machine(),
                command="python bench/calibrate_costs.py" + (" --quick" if args.quick else ""))
    parse_coefficients(data)  # the file must be one the service reads
    args.out.write_text(json.dumps(data, indent=1) + "\n")  # the checks below read it through the package
    from cnnrelax.pricing import load_coefficients

    load_coefficients.cache_clear()
    if not args.no_checks and args.out.resolve() == COSTS_PATH.resolve():
        data["checks"] = run_checks()
        args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out} ({time.process_time() - started:.0f} s of CPU)")


if __name__ == "__main__":
    main()
