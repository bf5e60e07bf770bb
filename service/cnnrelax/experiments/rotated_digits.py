"""Rotated digits regression (paper Table 1), over several seeds, with paired confidence intervals.

Each image is rotated by ``angles_per_image`` seeded angles uniform in ``[-angle_range, angle_range]``
degrees (``scipy.ndimage.rotate``, same size); the task is to predict the angle. Images (not rotated
copies) are split into train / validation / test, so a test image is never seen in training. The data
are scikit-learn's bundled 8x8 digits, or the user's own images (an ``N x H x W`` array, optionally with
one angle per image, in which case nothing is rotated).

- Baseline: ridge ``min ||y - b - X beta||^2 + alpha ||beta||^2`` on the pixels, ``alpha`` chosen on the
  validation split, refitted on train + validation, RMSE on the test split (degrees).
- Method: fit the randomized relaxation (QP, ``beta > 0``, 2-D ``p x q`` patches, stride 1) with the
  spec's activation ``sigma`` (ReLU by default) to the angles of at most ``fit_samples`` training samples,
  one filter per trial; append the features ``sigma(X_ij w)`` of the learned filter(s) to the pixels;
  ridge again. The labels the relaxation fits (:func:`relaxation_labels`): ``y - min(y) >= 0`` for
  ReLU, the absolute value and squared ReLU (their sums are never negative); the angles as they are for
  leaky ReLU (its range is every real, and a shift is a constant the bias-free network would have to
  make); ``P log 2 (1 + (y - min(y)) / (max(y) - min(y)))`` for softplus, ``P`` the patches per image
  (its sums are positive, and softplus is not homogeneous: a change of units changes its model, so the
  units are fixed here, independent of degrees or radians and of the angle range: the smallest angle is
  the zero filter's prediction ``sum_j softplus(0)``, and the range as much again).
- Scale-free features: ReLU is positively homogeneous, ``(X_ij (c w))_+ = c (X_ij w)_+`` (and so are leaky
  ReLU, the absolute value and, of degree 2, squared ReLU), so a filter's norm only scales its features
  against the ridge penalty. Every filter, learned or random, is therefore normalised to unit norm before
  the ridge, and the RMSEs depend only on the filters' directions. Softplus is not homogeneous: its
  learned filters enter at the norm the relaxation gave them.
- Control: the same number of random Gaussian filters (also of unit norm; for softplus, each at the norm of
  the learned filter it stands in for) in place of the learned ones, with the same activation.
- Statistics: every replicate seed (``seed, seed + 1, ...``) redraws the rotations, the split, the
  relaxation's subsample and directions and the random filters. The result reports the mean and
  standard deviation of each RMSE and the paired differences learned - raw and learned - random with a
  95% Student-t interval; ``filter_helps`` is true only when the learned - raw interval lies below zero.

Pixels are scaled to ``[0, 1]`` and centred by the training mean: with non-negative patches the
relaxation is unbounded for almost every ``r`` (``w <= 0`` makes every ``X_ij w <= 0``).

The parameters, their defaults and checks: :class:`cnnrelax.experiments.specs.RotatedDigitsSpec`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..core.activations import RELU, Activation, make_activation
from ..core.problem import FloatArray, InvalidParameterError, make_patching, make_problem
from ..core.relaxation import RelaxationSolver
from ..core.trials import trial_direction
from .common import ExperimentCancelled, ShouldStop, check_stop, derived_seed
from .specs import DIGITS_SOURCE, RotatedDigitsSpec, check_images

CONFIDENCE = 0.95
PAPER_RMSE = {"raw": 17.04, "filter": 16.59, "dataset": "MNIST (28x28)"}
_CACHE_SIZE = 2


@dataclass(frozen=True)
class Split:
    """Samples of one split: pixel rows (centred), angles in degrees, and the source image of each row."""

    X: FloatArray
    y: FloatArray
    image: np.ndarray


@dataclass(frozen=True)
class DigitsData:
    """The three splits of one replicate seed, the image shape, where the images came from and how many."""

    train: Split
    validation: Split
    test: Split
    image_shape: tuple[int, int]
    source: str
    images: int


_CACHE: OrderedDict[str, DigitsData] = OrderedDict()  # prepared splits by fingerprint, the latest last


def _load_images(spec: RotatedDigitsSpec) -> tuple[FloatArray, FloatArray | None, str]:
    """The image stack ``(N, H, W)`` and optional angles: the spec's inline arrays, its ``.npz`` file, or sklearn's."""
    if spec.images is not None:
        return spec.images, spec.angles, spec.source
    if spec.images_path is not None:
        with np.load(spec.images_path, allow_pickle=False) as archive:
            read = np.array(archive["images"])
            stored = np.array(archive["angles"]) if spec.angles is None and "angles" in archive.files else None
        images, angles = check_images(read, spec.angles if spec.angles is not None else stored)
        return images, angles, spec.source
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float64), None, DIGITS_SOURCE


def upsampled_digits(count: int, *, seed: int = 0, size: int = 28) -> FloatArray:
    """A stand-in for MNIST made here: scikit-learn's 8x8 digits upsampled to 20x20, placed in a ``size x size``
    canvas at a seeded offset (MNIST centres its digits in a 20x20 box of a 28x28 image), 0..255 pixels.

    Parameters
    ----------
    count : int
        Images to make (drawn with replacement from the 1797 digits; offsets make the copies differ).
    seed : int
        Seed of the draws and offsets.
    size : int
        Side of the canvas, at least 20.

    Returns
    -------
    array, shape (count, size, size)
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    if size < 20:
        raise InvalidParameterError("size", f"size must be at least 20, got {size}.")
    base = load_digits().images
    small = np.clip(np.stack([zoom(image, 2.5, order=1) for image in base]) * (255.0 / 16.0), 0.0, 255.0)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(base), size=count)
    offsets = rng.integers(0, size - 20 + 1, size=(count, 2))
    out = np.zeros((count, size, size))
    for i, (j, (r, c)) in enumerate(zip(which, offsets, strict=True)):
        out[i, r:r + 20, c:c + 20] = small[j]
    return out


def replicate_seeds(spec: RotatedDigitsSpec) -> list[int]:
    """The replicate seeds of a normalised spec: ``seed, seed + 1, ..., seed + seeds - 1``."""
    return [spec.seed + i for i in range(spec.seeds)]


def _rotate(images: FloatArray, angles: FloatArray) -> FloatArray:
    from scipy.ndimage import rotate

    return np.stack([[rotate(img, a, reshape=False, order=1, mode="constant", cval=0.0) for a in row]
                     for img, row in zip(images, angles, strict=True)])


def _fingerprint(spec: RotatedDigitsSpec, seed: int) -> str:
    """A key for the prepared data of one seed: every parameter it depends on, and the images' bytes."""
    digest = hashlib.sha256()
    keys = ("angles_per_image", "angle_range", "max_images", "train_fraction", "validation_fraction", "images_path")
    digest.update(json.dumps([seed] + [getattr(spec, k) for k in keys]).encode())
    for array in (spec.images, spec.angles):
        if array is not None:
            arr = np.ascontiguousarray(array)
            digest.update(repr(arr.shape).encode())
            digest.update(arr.tobytes())
    path = spec.images_path
    if spec.images is None and path is not None and os.path.isfile(path):
        stat = os.stat(path)
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def prepare_data(spec: RotatedDigitsSpec, seed: int | None = None) -> DigitsData:
    """Seeded angles and rotations, a split by image, pixels scaled to ``[0, 1]`` and centred by the train mean.

    Parameters
    ----------
    spec : RotatedDigitsSpec
        The experiment's spec.
    seed : int, optional
        The replicate seed; ``spec.seed`` by default.

    Returns
    -------
    DigitsData
        The train, validation and test splits of that seed (the last two prepared ones are cached).
    """
    seed = spec.seed if seed is None else int(seed)
    key = _fingerprint(spec, seed)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    data = _prepare(spec, seed)
    _CACHE[key] = data
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return data


def _prepare(spec: RotatedDigitsSpec, seed: int) -> DigitsData:
    images, given, source = _load_images(spec)
    rng = np.random.default_rng(derived_seed(seed, 0xD161))
    if spec.max_images is not None and spec.max_images < len(images):
        keep = np.sort(rng.choice(len(images), size=spec.max_images, replace=False))
        images = images[keep]
        given = None if given is None else given[keep]
    N, H, W = images.shape
    scale = float(np.max(np.abs(images))) or 1.0
    images = images / scale
    if given is not None:
        samples, angles = images[:, None], given[:, None]
    else:
        angles = rng.uniform(-spec.angle_range, spec.angle_range, size=(N, spec.angles_per_image))
        samples = _rotate(images, angles)
    order = rng.permutation(N)
    n_train = max(1, int(round(spec.train_fraction * N)))
    n_val = max(1, int(round(spec.validation_fraction * N)))
    parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    if len(parts[2]) == 0:
        raise InvalidParameterError("max_images", f"{N} images leave no test split.")
    per = samples.shape[1]

    def split(idx: np.ndarray) -> Split:
        idx = np.sort(idx)
        return Split(samples[idx].reshape(-1, H * W), angles[idx].reshape(-1), np.repeat(idx, per))

    train, val, test = (split(p) for p in parts)
    mean = train.X.mean(axis=0)
    train, val, test = (Split(s.X - mean, s.y, s.image) for s in (train, val, test))
    return DigitsData(train, val, test, image_shape=(H, W), source=source, images=N)


def _rmse(a: FloatArray, b: FloatArray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def ridge_test_rmse(features: Sequence[FloatArray], data: DigitsData, alphas: Sequence[float],
                    columns: Sequence[int | None] = (None,)) -> Any:
    """Choose ``alpha`` by validation RMSE, refit on train + validation, return the test RMSE (degrees).

    Each ``alpha`` is one Cholesky solve of ``(F_c^T F_c + alpha I) beta = F_c^T y_c`` (``F_c`` the centred
    training features); the refit reuses the Gram matrices (train + validation), and nested feature sets
    (the first ``c`` columns, ``columns``) reuse one Gram matrix. The linear algebra runs on one BLAS
    thread: on a shared machine OpenBLAS's threads wait on each other (a factorisation took 5 times longer
    with two threads than with one here); cells can run in parallel processes instead.

    Parameters
    ----------
    features : sequence of three arrays
        The train, validation and test feature matrices (same columns).
    data : DigitsData
        The splits, for the labels.
    alphas : sequence of float
        The candidate penalties.
    columns : sequence of int or None, optional
        Fit on the first ``c`` columns for each entry (``None``: all of them). With the default, one fit.

    Returns
    -------
    dict or list of dict
        ``rmse`` (test), ``validation_rmse``, ``alpha``, ``alpha_at_edge`` (the choice is an end of the
        grid) and ``features`` (the number of columns); a list, one per entry of ``columns``, when
        ``columns`` is given.
    """
    from scipy.linalg import cho_factor, cho_solve
    from threadpoolctl import threadpool_limits

    F_train, F_val, F_test = features
    y_train, y_val = data.train.y, data.validation.y
    n_train, n_val = F_train.shape[0], F_val.shape[0]
    n_all = n_train + n_val
    ordered = sorted(alphas)
    fits = []
    with threadpool_limits(limits=1, user_api="blas"):
        sums = (F_train.sum(axis=0), F_val.sum(axis=0))
        grams = (F_train.T @ F_train, F_val.T @ F_val)
        cross = (F_train.T @ y_train, F_val.T @ y_val)
        for count in columns:
            c = F_train.shape[1] if count is None else int(count)
            mean = sums[0][:c] / n_train
            gram = grams[0][:c, :c] - n_train * np.outer(mean, mean)
            rhs = cross[0][:c] - mean * y_train.sum()
            diagonal = np.arange(c)
            scores = []
            for i, alpha in enumerate(alphas):
                system = gram.copy()
                system[diagonal, diagonal] += alpha
                beta = cho_solve(cho_factor(system, check_finite=False), rhs, check_finite=False)
                prediction = (F_val[:, :c] - mean) @ beta + y_train.mean()
                scores.append((_rmse(prediction, y_val), i))
            val_rmse, best = min(scores)
            alpha = float(alphas[best])
            mean = (sums[0][:c] + sums[1][:c]) / n_all
            system = grams[0][:c, :c] + grams[1][:c, :c] - n_all * np.outer(mean, mean)
            system[diagonal, diagonal] += alpha
            rhs = cross[0][:c] + cross[1][:c] - mean * (y_train.sum() + y_val.sum())
            beta = cho_solve(cho_factor(system, check_finite=False), rhs, check_finite=False)
            prediction = (F_test[:, :c] - mean) @ beta + (y_train.sum() + y_val.sum()) / n_all
            fits.append({"rmse": _rmse(prediction, data.test.y), "validation_rmse": val_rmse, "alpha": alpha,
                         "alpha_at_edge": bool(len(alphas) > 1 and alpha in (ordered[0], ordered[-1])),
                         "features": c})
    return fits if tuple(columns) != (None,) else fits[0]


def unit_filters(filters: Sequence[FloatArray]) -> list[FloatArray]:
    """Every filter with a finite, non-zero norm, divided by its norm; zero (or non-finite) filters are dropped.

    The norm is taken after dividing by the largest entry, so tiny filters (1e-300) normalise without underflow.
    """
    out = []
    for w in filters:
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        if not np.isfinite(w).all():
            continue
        peak = float(np.max(np.abs(w))) if w.size else 0.0
        if peak == 0.0:
            continue
        w = w / peak
        out.append(w / np.linalg.norm(w))
    return out


def spec_activation(spec: RotatedDigitsSpec) -> Activation:
    """The spec's activation object (its name and ``negative_slope``)."""
    return make_activation(spec.activation, spec.negative_slope)


def relaxation_labels(activation: Activation, y: FloatArray, patches: int) -> FloatArray:
    """The labels the relaxation fits for the angles ``y`` (degrees), by activation.

    ``y - min(y)`` (non-negative) for the activations whose sums are never negative and that are positively
    homogeneous (ReLU, the absolute value, squared ReLU: a change of units only rescales the filter); ``y``
    itself for leaky ReLU (any sign); ``P log 2 (1 + (y - min(y)) / (max(y) - min(y)))`` for softplus, whose
    sums are positive and whose model depends on the units. Those are fixed here, whatever the angles' unit
    and range: the smallest angle maps to what the zero filter predicts, ``sum_j softplus(0) = P log 2``
    (``P`` patches; ReLU's shift maps it to its zero filter's 0 alike), and the range spans as much again, so
    pre-activations of order one, where softplus bends, fit it. (Centred pixels make the mean of
    ``X_ij w`` over the samples 0, so by Jensen the mean prediction is at least ``P log 2``: labels below it,
    e.g. ``[1, 2]``, leave the relaxation small filters, where softplus is nearly linear.) All ``P log 2``
    when every angle is the same.

    Parameters
    ----------
    activation : Activation
    y : array
        The angles of the fitted samples.
    patches : int
        Patches per image, ``P`` (softplus only).

    Returns
    -------
    array
        The labels, same shape.
    """
    if activation.lower == -np.inf:
        return np.array(y, dtype=np.float64)
    shifted: FloatArray = y - y.min()
    if activation.degree is None:
        span = float(shifted.max())
        base = patches * float(np.log(2.0))
        return base * (1.0 + (shifted / span if span > 0 else shifted))
    return shifted


def usable_filters(filters: Sequence[FloatArray], activation: Activation = RELU) -> list[FloatArray]:
    """The filters as they enter the ridge: :func:`unit_filters` for a homogeneous activation; for one that is
    not (softplus), the finite non-zero filters at their own norm (their scale is part of the model)."""
    if activation.degree is not None:
        return unit_filters(filters)
    out = []
    for w in filters:
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        if np.isfinite(w).all() and np.any(w != 0.0):
            out.append(w)
    return out


def relu_features(X: FloatArray, image_shape: Sequence[int], filter_shape: Sequence[int],
                  filters: Sequence[FloatArray], activation: Activation = RELU) -> FloatArray:
    """``sigma(X_ij w)`` (``(X_ij w)_+`` by default) for every filter ``w`` and every stride-1 ``p x q`` patch
    ``j`` of every row of ``X``.

    Computed by shifting and adding the images (no patch tensor), in the order of
    :class:`cnnrelax.core.problem.ImagePatching`: filter by filter, patches row-major by their top-left pixel.

    Parameters
    ----------
    X : array, shape (n, H * W)
        Images as rows (row-major).
    image_shape, filter_shape : pairs of int
        ``[H, W]`` and ``[p, q]``.
    filters : sequence of arrays of length ``p * q``
    activation : Activation, optional
        ``sigma`` (:func:`cnnrelax.core.activations.make_activation`); ReLU by default.

    Returns
    -------
    array, shape (n, len(filters) * (H - p + 1) * (W - q + 1))
    """
    H, W = int(image_shape[0]), int(image_shape[1])
    p, q = int(filter_shape[0]), int(filter_shape[1])
    R, C = H - p + 1, W - q + 1
    images = np.asarray(X, dtype=np.float64).reshape(-1, H, W)
    out = np.zeros((images.shape[0], len(filters), R, C))
    for f, w in enumerate(filters):
        kernel = np.asarray(w, dtype=np.float64).reshape(p, q)
        target = out[:, f]
        for a in range(p):
            for b in range(q):
                if kernel[a, b] != 0.0:
                    target += kernel[a, b] * images[:, a:a + R, b:b + C]
    out = activation.value(out)
    return out.reshape(images.shape[0], -1)


def filter_test_rmses(data: DigitsData, filter_shape: Sequence[int], filters: Sequence[FloatArray],
                      alphas: Sequence[float], activation: Activation = RELU) -> dict[str, Any]:
    """Ridge on the pixels plus ``sigma(X_ij w)`` of the unit-norm versions of ``filters`` (of ``filters`` as
    they are for an activation that is not homogeneous, :func:`usable_filters`).

    Returns the test RMSE with the first filter (``one``) and with all of them (``all``). With no usable
    filter (all zero), both are the raw-pixel ridge: a zero filter adds nothing.

    Parameters
    ----------
    data : DigitsData
    filter_shape : pair of int
    filters : sequence of arrays
        Any scale: only their directions matter (homogeneous activations).
    alphas : sequence of float
    activation : Activation, optional
        ``sigma``; ReLU by default.

    Returns
    -------
    dict
        ``one`` and ``all``, each the dict of :func:`ridge_test_rmse`, and ``count``, the filters used.
    """
    units = usable_filters(filters, activation)
    splits = (data.train, data.validation, data.test)
    if not units:
        raw = ridge_test_rmse([s.X for s in splits], data, alphas)
        return {"one": raw, "all": raw, "count": 0}
    maps = [relu_features(s.X, data.image_shape, filter_shape, units, activation) for s in splits]
    per = maps[0].shape[1] // len(units)
    pixels = data.train.X.shape[1]
    features = [np.hstack([s.X, f]) for s, f in zip(splits, maps, strict=True)]
    del maps
    if len(units) == 1:
        one = ridge_test_rmse(features, data, alphas)
        return {"one": one, "all": one, "count": 1}
    one, many = ridge_test_rmse(features, data, alphas, columns=(pixels + per, None))
    return {"one": one, "all": many, "count": len(units)}


def list_cells(spec: RotatedDigitsSpec) -> list[dict[str, Any]]:
    """Per replicate seed: the raw-pixel baseline, then one cell per filter shape."""
    return [cell for seed in replicate_seeds(spec)
            for cell in [{"seed": seed, "part": "raw"}]
            + [{"seed": seed, "part": "filter", "filter_shape": list(s)} for s in spec.shapes]]


def cell_key(cell: dict[str, Any]) -> tuple[Any, ...]:
    return (int(cell["seed"]), cell["part"]) + tuple(cell.get("filter_shape", ()))


def run_cell(spec: RotatedDigitsSpec, cell: dict[str, Any], should_stop: ShouldStop | None = None) -> dict[str, Any]:
    """Raw ridge, or: learn ``filters`` filters of one shape by the relaxation, and ridge with them and with
    as many random filters (every filter at unit norm). Times of each stage are in ``stage_time_s``."""
    start = time.monotonic()
    check_stop(should_stop)
    seed = int(cell["seed"])
    data = prepare_data(spec, seed)
    stages = {"data": time.monotonic() - start}
    alphas = spec.penalties
    if cell["part"] == "raw":
        mark = time.monotonic()
        fit = ridge_test_rmse([data.train.X, data.validation.X, data.test.X], data, alphas)
        stages["ridge"] = time.monotonic() - mark
        return {"seed": seed, "part": "raw", "rmse": fit["rmse"], "validation_rmse": fit["validation_rmse"],
                "alpha": fit["alpha"], "alpha_at_edge": fit["alpha_at_edge"], "features": fit["features"],
                "samples": {"train": len(data.train.y), "validation": len(data.validation.y), "test": len(data.test.y)},
                "images": data.images, "source": data.source, "stage_time_s": stages,
                "time_s": time.monotonic() - start}
    shape = [int(v) for v in cell["filter_shape"]]
    mark = time.monotonic()
    learned, statuses, norms, fit_samples = learn_filters(spec, data, seed, shape, should_stop)
    stages["relaxation"] = time.monotonic() - mark
    return score_filters(spec, data, seed, shape, learned, statuses=statuses, norms=norms, fit_samples=fit_samples,
                         stages=stages, start=start, should_stop=should_stop)


def learn_filters(spec: RotatedDigitsSpec, data: DigitsData, seed: int, shape: Sequence[int],
                  should_stop: ShouldStop | None = None) -> tuple[list[FloatArray], list[str], list[float | None], int]:
    """``spec.filters`` trials of the QP relaxation on a seeded subsample of the training split.

    Parameters
    ----------
    spec : RotatedDigitsSpec
        The spec (``fit_samples``, ``beta``, ``filters``, ``activation``, ``negative_slope``).
    data : DigitsData
    seed : int
        The replicate seed: it draws the subsample and the trials' directions.
    shape : pair of int
        ``[p, q]``.
    should_stop : callable, optional

    Returns
    -------
    tuple
        The filters of the trials that produced a non-zero one (as solved, any norm), every trial's status,
        every trial's filter norm (null without a filter), and the number of samples fitted.
    """
    n_train = len(data.train.y)
    fit_rng = np.random.default_rng(derived_seed(seed, shape[0], shape[1], 0xF17))
    subset = np.sort(fit_rng.choice(n_train, size=min(spec.fit_samples, n_train), replace=False))
    activation = spec_activation(spec)
    labels = relaxation_labels(activation, data.train.y[subset], problem_patches(data, shape))
    problem = make_problem(data.train.X[subset], labels, activation=activation,
                           patching=make_patching(image_shape=data.image_shape, filter_shape=shape))
    solver = RelaxationSolver(problem, "qp", beta=spec.beta)
    direction_seed = derived_seed(seed, shape[0], shape[1])
    learned: list[FloatArray] = []
    statuses: list[str] = []
    norms: list[float | None] = []
    for t in range(spec.filters):
        check_stop(should_stop)
        sol = solver.solve(trial_direction(direction_seed, t, problem.m), should_stop=should_stop)
        if sol.status == "cancelled":
            raise ExperimentCancelled("The experiment was cancelled.")
        statuses.append(sol.status)
        norms.append(None if sol.w is None else float(np.linalg.norm(sol.w)))
        if sol.w is not None and usable_filters([sol.w], activation):
            learned.append(sol.w)
    return learned, statuses, norms, int(len(subset))


def score_filters(spec: RotatedDigitsSpec, data: DigitsData, seed: int, shape: Sequence[int],
                  learned: Sequence[FloatArray], *,
                  statuses: Sequence[str] = (), norms: Sequence[float | None] = (), fit_samples: int = 0,
                  stages: dict[str, float] | None = None, start: float | None = None,
                  should_stop: ShouldStop | None = None) -> dict[str, Any]:
    """A filter cell's result: ridge with the learned filters and with as many random ones, all at unit norm
    (softplus: the random filters at the learned ones' norms), with the spec's activation.

    Parameters
    ----------
    spec, data, seed, shape
        As for :func:`learn_filters`; the seed also draws the random filters.
    learned : sequence of arrays
        The learned filters (any norm; zero ones are dropped).
    statuses, norms, fit_samples, stages, start
        What :func:`learn_filters` reported and the stage times so far, copied into the result.
    should_stop : callable, optional

    Returns
    -------
    dict
        The cell: RMSEs with one and with all learned filters, with one and with as many random filters,
        the chosen penalties, the unit filters and the stage times.
    """
    start = time.monotonic() if start is None else start
    stages = dict(stages or {})
    check_stop(should_stop)
    mark = time.monotonic()
    shape = [int(v) for v in shape]
    activation = spec_activation(spec)
    units = usable_filters(learned, activation)
    random_rng = np.random.default_rng(derived_seed(seed, shape[0], shape[1], 0xA5))
    random = [random_rng.standard_normal(shape[0] * shape[1]) for _ in range(len(units))]
    if activation.degree is None:  # not homogeneous: each random filter at its learned counterpart's norm
        random = [r * (np.linalg.norm(w) / np.linalg.norm(r)) for r, w in zip(random, units, strict=True)]
    with_learned = filter_test_rmses(data, shape, units, spec.penalties, activation)
    check_stop(should_stop)
    with_random = filter_test_rmses(data, shape, random, spec.penalties, activation)
    stages["ridge"] = time.monotonic() - mark
    return {
        "seed": int(seed), "part": "filter", "filter_shape": shape, "patches": int(problem_patches(data, shape)),
        "fit_samples": int(fit_samples), "statuses": list(statuses), "filter_norms": list(norms),
        "n_filters": len(units), "filters": [w.reshape(shape).tolist() for w in units],
        "rmse_one_filter": with_learned["one"]["rmse"], "alpha_one_filter": with_learned["one"]["alpha"],
        "rmse_all_filters": with_learned["all"]["rmse"], "alpha_all_filters": with_learned["all"]["alpha"],
        "rmse_random_one_filter": with_random["one"]["rmse"], "rmse_random_all_filters": with_random["all"]["rmse"],
        "alpha_at_edge": any(r[v]["alpha_at_edge"] for r in (with_learned, with_random) for v in ("one", "all")),
        "stage_time_s": stages, "time_s": time.monotonic() - start,
    }


def problem_patches(data: DigitsData, shape: Sequence[int]) -> int:
    """Stride-1 patches of a ``p x q`` filter in the data's images."""
    H, W = data.image_shape
    return (H - int(shape[0]) + 1) * (W - int(shape[1]) + 1)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean of the paired differences ``a - b`` with its Student-t interval (``scipy.stats.ttest_rel``).

    Parameters
    ----------
    a, b : sequences of float
        One value per replicate seed, paired by position.
    confidence : float
        Level of the interval.

    Returns
    -------
    dict
        ``mean``, ``std`` (of the differences, ``ddof=1``), ``interval`` ``[low, high]`` (null with one seed),
        ``confidence``, ``seeds`` and ``verdict``: ``lower`` when the interval lies below zero, ``higher``
        when above, else ``inconclusive``. Identical differences give the point interval ``[d, d]``.
    """
    from scipy.stats import ttest_rel

    x, z = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = x - z
    count = int(diff.size)
    out: dict[str, Any] = {"mean": float(diff.mean()) if count else None, "std": None, "interval": None,
                           "confidence": confidence, "seeds": count, "verdict": "inconclusive"}
    if count < 2:
        return out
    std = float(diff.std(ddof=1))
    out["std"] = std
    if std == 0.0:
        low = high = float(diff.mean())
    else:
        ci = ttest_rel(x, z).confidence_interval(confidence_level=confidence)
        low, high = float(ci.low), float(ci.high)
    out["interval"] = [low, high]
    out["verdict"] = "lower" if high < 0 else "higher" if low > 0 else "inconclusive"
    return out


def _summary(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "per_seed": [float(v) for v in arr]}


def _verdict(helps: dict[str, Any], versus_random: dict[str, Any]) -> str:
    def words(comparison: dict[str, Any], other: str) -> str:
        if comparison["interval"] is None:
            return f"cannot be compared with {other} on one seed"
        low, high = comparison["interval"]
        side = {"lower": f"lowers the RMSE against {other}", "higher": f"raises the RMSE against {other}",
                "inconclusive": f"is not distinguishable from {other}"}[comparison["verdict"]]
        return f"{side} ({comparison['mean']:+.3f} degrees, 95% interval [{low:+.3f}, {high:+.3f}])"

    return (f"Over {helps['seeds']} seeds the learned filter {words(helps, 'raw pixels')} and "
            f"{words(versus_random, 'a random filter of the same norm')}.")


def assemble(spec: RotatedDigitsSpec, cells: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    """Per-seed RMSEs, their means and spreads, and the paired comparisons; the primary variant is the first
    filter shape with one learned filter (Table 1's row)."""
    _CACHE.clear()  # the run is over: do not keep its images in a long-lived worker
    seeds = replicate_seeds(spec)
    raw = {c["seed"]: c for c in cells if c["part"] == "raw"}
    raw_rmse = [raw[s]["rmse"] for s in seeds]
    variants = []
    for shape in spec.shapes:
        by_seed = {c["seed"]: c for c in cells if c["part"] == "filter" and c["filter_shape"] == list(shape)}
        rows = [by_seed[s] for s in seeds]
        values = {key: [r[key] for r in rows] for key in
                  ("rmse_one_filter", "rmse_all_filters", "rmse_random_one_filter", "rmse_random_all_filters")}
        variants.append({
            "filter_shape": list(shape), "patches": rows[0]["patches"],
            "n_filters": [r["n_filters"] for r in rows],
            **{key: _summary(v) for key, v in values.items()},
            "one_minus_raw": paired_difference(values["rmse_one_filter"], raw_rmse),
            "one_minus_random": paired_difference(values["rmse_one_filter"], values["rmse_random_one_filter"]),
            "all_minus_raw": paired_difference(values["rmse_all_filters"], raw_rmse),
            "all_minus_random": paired_difference(values["rmse_all_filters"], values["rmse_random_all_filters"]),
            "filters": rows[0]["filters"],
        })
    primary = variants[0]
    helps, versus_random = primary["one_minus_raw"], primary["one_minus_random"]
    first_raw = raw[seeds[0]]
    order = {cell_key(c): i for i, c in enumerate(list_cells(spec))}
    return {
        "kind": "rotated_digits",
        "spec": spec.public(),
        "activation": spec.activation,
        "seed": spec.seed,
        "seeds": seeds,
        "rmse_raw": float(np.mean(raw_rmse)),
        "rmse_raw_std": _summary(raw_rmse)["std"],
        "rmse_filter": primary["rmse_one_filter"]["mean"],
        "rmse_filter_std": primary["rmse_one_filter"]["std"],
        "rmse_random": primary["rmse_random_one_filter"]["mean"],
        "rmse_random_std": primary["rmse_random_one_filter"]["std"],
        "learned_minus_raw": helps,
        "learned_minus_random": versus_random,
        "filter_helps": helps["verdict"] == "lower",
        "filter_beats_random": versus_random["verdict"] == "lower",
        "verdict": _verdict(helps, versus_random),
        "filter": primary["filters"][0] if primary["filters"] else None,
        "filter_shape": primary["filter_shape"],
        "rmse_raw_per_seed": [float(v) for v in raw_rmse],
        "alpha_raw": [raw[s]["alpha"] for s in seeds],
        "samples": first_raw["samples"], "images": first_raw["images"], "source": first_raw["source"],
        "variants": variants,
        "cells": sorted(cells, key=lambda c: order.get(cell_key(c), len(order))),
        "paper": PAPER_RMSE,
        "time_s": elapsed,
        "cell_time_s": float(sum(c["time_s"] for c in cells)),
    }
