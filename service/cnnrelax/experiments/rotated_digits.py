"""Rotated digits regression (paper Table 1) on scikit-learn's bundled 8x8 digits, or on user images.

Each image is rotated by ``angles_per_image`` seeded angles uniform in ``[-angle_range, angle_range]``
degrees (``scipy.ndimage.rotate``, same size); the task is to predict the angle. Images (not rotated
copies) are split into train / validation / test, so a test image is never seen in training.

- Baseline: ridge ``min ||y - b - X beta||^2 + alpha ||beta||^2`` on the pixels, ``alpha`` chosen on the
  validation split, refitted on train + validation, RMSE on the test split (degrees).
- Method: fit the randomized relaxation (QP, ``beta > 0``, 2-D ``p x q`` patches, stride 1) to the
  shifted angles ``y - min(y_train) >= 0`` (a sum of ReLUs is non-negative); append the features
  ``(X_ij w)_+`` of the learned filter(s) to the pixels; ridge again.
- Honest controls reported beside it: several filters from several trials, other patch sizes, and the
  same number of random Gaussian filters in place of the learned ones.

Pixels are scaled to ``[0, 1]`` and centred by the training mean: with non-negative patches the
relaxation is unbounded for almost every ``r`` (``w <= 0`` makes every ``X_ij w <= 0``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..problem import FloatArray, InvalidParameterError, make_patching, make_problem
from ..relaxation import RelaxationSolver
from ..trials import trial_direction
from .common import ShouldStop, check_stop, derived_seed, non_negative_int, positive_float, positive_int

DEFAULT_FILTER_SHAPES: tuple[tuple[int, int], ...] = ((4, 4), (3, 3), (5, 5))
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 5, 17))
PAPER_RMSE = {"raw": 17.04, "filter": 16.59, "dataset": "MNIST (28x28)"}
MAX_PIXELS = 64 * 64


@dataclass(frozen=True)
class Split:
    """Samples of one split: pixel rows (centred), angles in degrees, and the source image of each row."""

    X: FloatArray
    y: FloatArray
    image: np.ndarray


@dataclass(frozen=True)
class DigitsData:
    train: Split
    validation: Split
    test: Split
    image_shape: tuple[int, int]
    source: str
    images: int


def _load_images(spec: dict) -> tuple[FloatArray, FloatArray | None, str]:
    """The image stack ``(N, H, W)`` and optional angles: from ``spec['images']``, a ``.npz`` path, or sklearn."""
    images = spec.get("images")
    angles = spec.get("angles")
    source = "sklearn.datasets.load_digits"
    path = spec.get("images_path")
    if images is None and path is not None:
        if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
            raise InvalidParameterError("images_path", f"images_path must name an existing .npz file, got {path!r}.")
        try:
            with np.load(path, allow_pickle=False) as archive:
                if "images" not in archive.files:
                    raise InvalidParameterError(
                        "images_path", f"{path} has no 'images' array (it holds {', '.join(archive.files) or 'nothing'}).")
                images = np.array(archive["images"])
                if angles is None and "angles" in archive.files:
                    angles = np.array(archive["angles"])
        except InvalidParameterError:
            raise
        except Exception as exc:  # a corrupt or non-npz file
            raise InvalidParameterError("images_path", f"{path} is not a readable .npz file ({exc}).") from None
        source = str(path)
    if images is None:
        from sklearn.datasets import load_digits

        return load_digits().images.astype(np.float64), None, source
    try:
        arr = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError("images", "images must be a numeric array of shape (N, H, W).") from None
    if arr.ndim != 3 or arr.shape[0] < 10:
        raise InvalidParameterError("images", f"images must have shape (N, H, W) with N >= 10, got {arr.shape}.")
    if arr.shape[1] * arr.shape[2] > MAX_PIXELS:
        raise InvalidParameterError("images", f"images of {arr.shape[1]}x{arr.shape[2]} pixels exceed {MAX_PIXELS} pixels.")
    if not np.isfinite(arr).all():
        raise InvalidParameterError("images", "images contain NaN or infinite values.")
    if angles is not None:
        try:
            angles = np.asarray(angles, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidParameterError("angles", "angles must be a numeric vector, one per image.") from None
        if angles.shape[0] != arr.shape[0] or not np.isfinite(angles).all():
            raise InvalidParameterError("angles", f"angles must hold {arr.shape[0]} finite numbers (one per image), got {angles.shape[0]}.")
    if source == "sklearn.datasets.load_digits":
        source = "user images"
    return arr, angles, source


def validate(spec: dict) -> dict:
    """Normalise a rotated-digits spec, filling defaults; raise ``InvalidParameterError`` naming the parameter."""
    known = {"kind", "seed", "angles_per_image", "angle_range", "filter_shapes", "filters", "beta", "max_images",
             "train_fraction", "validation_fraction", "images", "angles", "images_path", "alphas",
             "source", "image_shape", "angles_given"}  # the last three: derived, so a normalised spec re-validates
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InvalidParameterError(unknown[0], f"Unknown rotated_digits parameter(s): {', '.join(unknown)}.")
    images, angles, source = _load_images(spec)
    H, W = images.shape[1:]
    shapes = spec.get("filter_shapes", [list(s) for s in DEFAULT_FILTER_SHAPES if s[0] <= H and s[1] <= W])
    if not isinstance(shapes, (list, tuple)) or not shapes:
        raise InvalidParameterError("filter_shapes", f"filter_shapes must be a non-empty list of [p, q], got {shapes!r}.")
    norm_shapes: list[list[int]] = []
    for shape in shapes:
        if (not isinstance(shape, (list, tuple)) or len(shape) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in shape)):
            raise InvalidParameterError("filter_shapes", f"each filter shape must be [p, q] with positive integers, got {shape!r}.")
        if shape[0] > H or shape[1] > W:
            raise InvalidParameterError("filter_shapes", f"filter {shape[0]}x{shape[1]} does not fit in {H}x{W} images.")
        if [int(shape[0]), int(shape[1])] not in norm_shapes:
            norm_shapes.append([int(shape[0]), int(shape[1])])
    train_fraction = positive_float(spec, "train_fraction", 0.6)
    validation_fraction = positive_float(spec, "validation_fraction", 0.2)
    if train_fraction + validation_fraction >= 1.0:
        raise InvalidParameterError(
            "train_fraction", f"train_fraction + validation_fraction must leave a test split, got {train_fraction} + {validation_fraction}.")
    alphas = spec.get("alphas", list(DEFAULT_ALPHAS))
    if (not isinstance(alphas, (list, tuple)) or not alphas
            or any(isinstance(a, bool) or not isinstance(a, (int, float)) or not np.isfinite(a) or a <= 0 for a in alphas)):
        raise InvalidParameterError("alphas", f"alphas must be a non-empty list of positive numbers, got {alphas!r}.")
    max_images = spec.get("max_images")
    if max_images is not None:
        max_images = positive_int(spec, "max_images", None)
        if max_images < 10:
            raise InvalidParameterError("max_images", f"max_images must be at least 10, got {max_images}.")
    out: dict[str, Any] = {
        "kind": "rotated_digits",
        "seed": non_negative_int(spec, "seed", 0),
        "angles_per_image": positive_int(spec, "angles_per_image", 4, maximum=64),
        "angle_range": positive_float(spec, "angle_range", 45.0),
        "filter_shapes": norm_shapes,
        "filters": positive_int(spec, "filters", 4, maximum=64),
        "beta": positive_float(spec, "beta", 0.1),
        "max_images": max_images,
        "train_fraction": train_fraction,
        "validation_fraction": validation_fraction,
        "alphas": [float(a) for a in alphas],
        "source": source,
        "image_shape": [int(H), int(W)],
    }
    if angles is not None:
        out["angles_given"] = True
    if spec.get("images") is not None:
        out["images"] = images
        if angles is not None:
            out["angles"] = angles
    elif spec.get("images_path") is not None:
        out["images_path"] = str(spec["images_path"])
    return out


def _rotate(images: FloatArray, angles: FloatArray) -> FloatArray:
    from scipy.ndimage import rotate

    return np.stack([[rotate(img, a, reshape=False, order=1, mode="constant", cval=0.0) for a in row]
                     for img, row in zip(images, angles)])


def prepare_data(spec: dict) -> DigitsData:
    """Seeded angles and rotations, a split by image, pixels scaled to ``[0, 1]`` and centred by the train mean."""
    images, given, source = _load_images(spec)
    rng = np.random.default_rng(derived_seed(spec["seed"], 0xD161))
    if spec.get("max_images") is not None and spec["max_images"] < len(images):
        keep = np.sort(rng.choice(len(images), size=spec["max_images"], replace=False))
        images = images[keep]
        given = None if given is None else given[keep]
    N, H, W = images.shape
    scale = float(np.max(np.abs(images))) or 1.0
    images = images / scale
    if given is not None:
        samples, angles = images[:, None], given[:, None]
    else:
        angles = rng.uniform(-spec["angle_range"], spec["angle_range"], size=(N, spec["angles_per_image"]))
        samples = _rotate(images, angles)
    order = rng.permutation(N)
    n_train = max(1, int(round(spec["train_fraction"] * N)))
    n_val = max(1, int(round(spec["validation_fraction"] * N)))
    parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    if len(parts[2]) == 0:
        raise InvalidParameterError("max_images", f"{N} images leave no test split.")
    per = samples.shape[1]

    def split(idx: np.ndarray) -> Split:
        idx = np.sort(idx)
        return Split(samples[idx].reshape(-1, H * W), angles[idx].reshape(-1), np.repeat(idx, per))

    train, val, test = (split(p) for p in parts)
    mean = train.X.mean(axis=0)
    centred = [Split(s.X - mean, s.y, s.image) for s in (train, val, test)]
    return DigitsData(*centred, image_shape=(H, W), source=source, images=N)


def _ridge_fit(X: FloatArray, y: FloatArray, alpha: float) -> tuple[FloatArray, float, FloatArray]:
    """``min_{b, beta} ||y - b - X beta||^2 + alpha ||beta||^2`` via the centred normal equations."""
    mean = X.mean(axis=0)
    Xc = X - mean
    beta = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - y.mean()))
    return beta, float(y.mean()), mean


def _ridge_predict(model: tuple[FloatArray, float, FloatArray], X: FloatArray) -> FloatArray:
    beta, intercept, mean = model
    return (X - mean) @ beta + intercept


def _rmse(a: FloatArray, b: FloatArray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def ridge_test_rmse(features: list[FloatArray], data: DigitsData, alphas: list[float]) -> dict[str, float]:
    """Choose ``alpha`` by validation RMSE, refit on train + validation, return the test RMSE (degrees)."""
    F_train, F_val, F_test = features
    scores = [(_rmse(_ridge_predict(_ridge_fit(F_train, data.train.y, a), F_val), data.validation.y), a) for a in alphas]
    val_rmse, alpha = min(scores)
    model = _ridge_fit(np.vstack([F_train, F_val]), np.concatenate([data.train.y, data.validation.y]), alpha)
    return {"rmse": _rmse(_ridge_predict(model, F_test), data.test.y), "validation_rmse": val_rmse, "alpha": alpha,
            "features": int(F_train.shape[1])}


def _relu_features(data: DigitsData, filter_shape: list[int], filters: list[FloatArray]) -> list[FloatArray]:
    """Pixels followed by ``(X_ij w)_+`` for every filter ``w`` and patch ``j``, for the three splits."""
    patching = make_patching(image_shape=data.image_shape, filter_shape=filter_shape)
    out = []
    for s in (data.train, data.validation, data.test):
        problem = make_problem(s.X, np.zeros(len(s.y)), patching=patching)
        out.append(np.hstack([s.X] + [np.maximum(problem.preactivations(w), 0.0) for w in filters]))
    return out


def list_cells(spec: dict) -> list[dict]:
    """The raw-pixel baseline, then one cell per filter shape."""
    return [{"part": "raw"}] + [{"part": "filter", "filter_shape": list(s)} for s in spec["filter_shapes"]]


def cell_key(cell: dict) -> tuple:
    return (cell["part"],) + tuple(cell.get("filter_shape", ()))


def run_cell(spec: dict, cell: dict, should_stop: ShouldStop | None = None) -> dict:
    """Raw ridge, or: fit ``filters`` relaxation trials with this filter shape and ridge on the augmented features."""
    start = time.monotonic()
    check_stop(should_stop)
    data = prepare_data(spec)
    alphas = spec["alphas"]
    if cell["part"] == "raw":
        fit = ridge_test_rmse([data.train.X, data.validation.X, data.test.X], data, alphas)
        return {"part": "raw", **fit, "time_s": time.monotonic() - start,
                "samples": {"train": len(data.train.y), "validation": len(data.validation.y), "test": len(data.test.y)},
                "images": data.images, "source": data.source}
    shape = list(cell["filter_shape"])
    patching = make_patching(image_shape=data.image_shape, filter_shape=shape)
    labels = data.train.y - data.train.y.min()
    problem = make_problem(data.train.X, labels, patching=patching)
    solver = RelaxationSolver(problem, "qp", beta=spec["beta"])
    seed = derived_seed(spec["seed"], shape[0], shape[1])
    filters: list[FloatArray] = []
    statuses: list[str] = []
    for t in range(spec["filters"]):
        check_stop(should_stop)
        sol = solver.solve(trial_direction(seed, t, problem.m), should_stop=should_stop)
        check_stop(should_stop)
        statuses.append(sol.status)
        if sol.w is not None and np.linalg.norm(sol.w) > 0:
            filters.append(sol.w)
    rng = np.random.default_rng(derived_seed(spec["seed"], shape[0], shape[1], 0xA5))
    random_filters = [rng.standard_normal(problem.m) for _ in range(max(len(filters), 1))]
    out: dict[str, Any] = {
        "part": "filter", "filter_shape": shape, "patches": problem.k, "statuses": statuses,
        "filters": [w.reshape(shape).tolist() for w in filters], "relaxation_loss": [problem.loss(w) for w in filters],
        "label_shift": float(data.train.y.min()),
    }
    if filters:
        one, many = (ridge_test_rmse(_relu_features(data, shape, fs), data, alphas) for fs in (filters[:1], filters))
        out.update(rmse_one_filter=one["rmse"], alpha_one_filter=one["alpha"],
                   rmse_all_filters=many["rmse"], alpha_all_filters=many["alpha"], n_filters=len(filters))
    else:
        out.update(rmse_one_filter=None, rmse_all_filters=None, n_filters=0)
    rand_one = ridge_test_rmse(_relu_features(data, shape, random_filters[:1]), data, alphas)
    rand_all = ridge_test_rmse(_relu_features(data, shape, random_filters), data, alphas)
    out.update(rmse_random_one_filter=rand_one["rmse"], rmse_random_all_filters=rand_all["rmse"],
               n_random_filters=len(random_filters), time_s=time.monotonic() - start)
    return out


def _public_spec(spec: dict) -> dict:
    out = {k: v for k, v in spec.items() if k not in ("images", "angles")}
    if "images" in spec:
        out["images"] = {"shape": list(np.shape(spec["images"]))}
    return out


def assemble(spec: dict, cells: list[dict], elapsed: float) -> dict:
    """``rmse_raw`` and ``rmse_filter`` (first filter shape, one learned filter), every variant, the controls."""
    raw = next(c for c in cells if c["part"] == "raw")
    variants = [c for s in spec["filter_shapes"] for c in cells
                if c["part"] == "filter" and c["filter_shape"] == list(s)]
    primary = variants[0]
    rmse_filter = primary["rmse_one_filter"]
    return {
        "kind": "rotated_digits",
        "spec": _public_spec(spec),
        "seed": spec["seed"],
        "rmse_raw": raw["rmse"],
        "rmse_filter": rmse_filter,
        "filter": primary["filters"][0] if primary["filters"] else None,
        "filter_shape": primary["filter_shape"],
        "alpha_raw": raw["alpha"],
        "samples": raw["samples"], "images": raw["images"], "source": raw["source"],
        "variants": variants,
        "filter_helps": None if rmse_filter is None else bool(rmse_filter < raw["rmse"]),
        "paper": PAPER_RMSE,
        "time_s": elapsed,
    }
