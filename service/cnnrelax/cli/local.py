"""Running a command's work in this process, through the job functions the service's workers run: a solve
(:func:`cnnrelax.jobs.run_solve_job` on a :class:`~cnnrelax.specs.SolveSpec`), a certificate
(:func:`cnnrelax.certification.run_certify_job` on a :class:`~cnnrelax.specs.CertifySpec`) and an experiment
(:func:`cnnrelax.jobs.run_job` on its typed spec). The spec is checked as the API checks a request; a spec the
checks refuse ends the command with exit 2. Heavy modules are imported only when called."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InvalidParameterError
from ..types import Progress
from .inputs import read_images_archive
from .render import fail


@contextmanager
def spec_errors_end_command(show_input: bool) -> Iterator[None]:
    """Within the block, a spec the checks refuse ends the command with exit 2 and the parameter's sentence
    (a pydantic error's first; with ``show_input`` the value given, too)."""
    from pydantic import ValidationError

    try:
        yield
    except InvalidParameterError as error:
        fail(f"{error.parameter}: {error.message}", code=2)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        fail(f"{where}: {first['msg']}" + (f" (got {first.get('input')!r})" if show_input else ""), code=2)


def solve_in_process(
    X: np.ndarray | None, y: np.ndarray | None, planted: dict[str, Any] | None, k: int | None,
    output_weights: list[float] | None, options: dict[str, Any], progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the solve's :class:`~cnnrelax.specs.SolveSpec`, check it, and run the job function the service's
    workers run (:func:`cnnrelax.jobs.run_solve_job`); return its JSON-able result.

    Parameters
    ----------
    X, y : ndarray, optional
        The data (a data file), or ``None`` with ``planted``.
    planted : dict, optional
        A planted spec (``n``, ``d``, ``k``, ``seed``, ...).
    k : int, optional
        Patches per row of the data.
    output_weights : list of float, optional
        ``c_j >= 0`` per patch.
    options : dict
        The other solve options (``None``: the default).
    progress : callable, optional
        ``progress(done, total, {})`` after every trial.

    Returns
    -------
    dict
        The result, as a job's ``result``.
    """
    from ..jobs import run_solve_job
    from ..specs import UNLIMITED, DataShape, SolveSpec

    members = {**options, "planted": planted, "k": k, "output_weights": output_weights}
    spec = SolveSpec.model_validate({key: value for key, value in members.items() if value is not None})
    if X is None or y is None:
        spec.check(None, UNLIMITED)
        return run_solve_job(spec, None, None, progress=progress)
    spec.check(DataShape(X.shape[0], X.shape[1], labels=y), UNLIMITED)
    return run_solve_job(spec, (X, y), None, progress=progress)


def default_trials() -> int:
    """The trials a solve asks for when ``--trials`` is not given (the core's default)."""
    from ..specs import CORE_DEFAULTS

    return CORE_DEFAULTS.trials


def certify_in_process(X: np.ndarray | None, y: np.ndarray | None, members: dict[str, Any]) -> dict[str, Any]:
    """Build the :class:`~cnnrelax.specs.CertifySpec`, check it and certify in this process (the job function a
    worker runs); return the certificate's JSON."""
    from ..certification import run_certify_job
    from ..specs import UNLIMITED, CertifySpec, DataShape

    spec = CertifySpec.model_validate({key: value for key, value in members.items() if value is not None})
    data = None if X is None or y is None else DataShape(X.shape[0], X.shape[1], labels=y)
    spec.check(data, UNLIMITED)
    return run_certify_job(spec, None if X is None or y is None else (X, y))


def experiment_in_process(spec: dict[str, Any], images_file: Path | None, timeout: float | None,
                          progress: Progress) -> dict[str, Any]:
    """Run an experiment's spec through the job function a worker runs (:func:`cnnrelax.jobs.run_job`), with
    ``images_file``'s images and angles inline, giving up after ``timeout`` seconds (exit 1); a spec the
    experiment refuses exits 2."""
    try:
        from cnnrelax.experiments import ExperimentCancelled, parse_experiment_spec
    except ImportError as error:
        fail(f"in-process experiments need cnnrelax.experiments ({error}); or pass --url of a service.")
    from ..jobs import run_job
    from ..types import JobKind

    if images_file is not None:
        spec.update(read_images_archive(images_file))
    started = time.monotonic()

    def should_stop() -> bool:
        return timeout is not None and time.monotonic() - started > timeout

    try:
        typed = parse_experiment_spec(spec)  # the typed spec a worker would read back
        return run_job(JobKind.experiment, typed, should_stop=should_stop, progress=progress)
    except ExperimentCancelled:
        fail(f"the experiment did not finish within --timeout {timeout:g} s.")
    except ValueError as error:
        fail(str(error), code=2)
