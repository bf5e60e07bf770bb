"""``cnnrelax solve``: solve for the filter of a data file or a planted problem, in this process or on a service
(uploading the data first), with a progress bar of the trials; print the filter with its certificate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np
import typer

from .inputs import check_problem_source, load_problem_data, parse_output_weights, parse_planted
from .local import default_trials, solve_in_process, spec_errors_end_command
from .options import (
    ApiKeyOption,
    DataArgument,
    KOption,
    LabelsOption,
    OutputWeightsOption,
    QuietOption,
    ServiceTimeoutOption,
    in_process_url_option,
)
from .remote import client_errors_end_command, service_client
from .render import ProgressBar, fail, follow_trials, print_json, render_solve_summary, trials_sentence

if TYPE_CHECKING:
    from cnnrelax_client import SolveOptions


def solve(
    data: Optional[Path] = DataArgument,
    labels: Optional[Path] = LabelsOption,
    planted: Optional[str] = typer.Option(None, "--planted", help="A planted problem instead of a file, "
                                          "e.g. n=2000,d=20,k=1,seed=0[,noise_std=0.0]."),
    k: Optional[int] = KOption,
    relaxation: Optional[str] = typer.Option(None, help="lp, qp or naive (default: lp)."),
    beta: Optional[float] = typer.Option(None, help="Perturbation weight of the QP relaxation."),
    trials: Optional[int] = typer.Option(None, min=1, help="Randomized trials (default: 8)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the trials' directions (default: 0)."),
    output_weights: Optional[str] = OutputWeightsOption,
    stop_on_certificate: Optional[bool] = typer.Option(
        None, "--stop-on-certificate/--no-stop-on-certificate",
        help="Stop at the first trial whose zero loss certifies a global minimum (default: on)."),
    polish: Optional[bool] = typer.Option(None, "--polish/--no-polish", help="Polish by least squares."),
    coverage_samples: Optional[int] = typer.Option(
        None, "--coverage-samples", min=0, help="Directions sampled for certificate.coverage (0 skips; default 64)."),
    activation: Optional[str] = typer.Option(
        None, "--activation", help="The hidden layer's activation: relu (default), leaky_relu, absolute, "
                                   "squared_relu or softplus; a planted problem's labels are drawn with it."),
    negative_slope: Optional[float] = typer.Option(
        None, "--negative-slope", help="leaky_relu's slope for negative inputs, in (0, 1) (default 0.01)."),
    url: Optional[str] = in_process_url_option("the solve runs in this process"),
    api_key: Optional[str] = ApiKeyOption,
    timeout: Optional[float] = ServiceTimeoutOption,
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON (id, status, result) only."),
    quiet: bool = QuietOption,
) -> None:
    """Solve for the filter of a dataset or a planted problem, and print it with its certificate.

    By default a solve stops at the first trial whose zero loss certifies a global minimum (fewer trials then
    run than --trials asks; the summary says so): --no-stop-on-certificate runs them all."""
    check_problem_source(data, planted)
    planted_spec = parse_planted(planted) if planted is not None else None
    if planted_spec is not None and k is not None and k != planted_spec["k"]:
        fail(f"--k {k} contradicts --planted k={planted_spec['k']}; give k inside --planted.", code=2)
    weights = parse_output_weights(output_weights)
    options: dict[str, Any] = {"relaxation": relaxation, "beta": beta, "trials": trials, "seed": seed,
                               "stop_on_certificate": stop_on_certificate, "polish": polish,
                               "coverage_samples": coverage_samples, "activation": activation,
                               "negative_slope": negative_slope}
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    if data is not None:
        X, y = load_problem_data(data, labels)

    job_id: str | None = None
    asked = trials
    if url:
        client = service_client(url, api_key)
        submitted = {key: value for key, value in {**options, "k": k, "output_weights": weights}.items()
                     if value is not None}
        with client_errors_end_command(), client, ProgressBar("trials", enabled=not quiet) as bar:
            if planted_spec is not None:
                job = client.submit(planted=planted_spec, options=cast("SolveOptions", submitted))
            else:
                assert X is not None and y is not None  # a DATA file was read above
                dataset = client.upload_dataset(X, y)
                job = client.submit(dataset_id=dataset.id, options=cast("SolveOptions", submitted))
            job_id = job.id
            job = client.wait(job, timeout=timeout, progress=lambda snapshot: follow_trials(bar, snapshot))
            asked = job.progress.total if job.progress is not None else asked
        envelope = {key: value for key, value in job.raw.items()}
        if job.status != "succeeded":
            if as_json:
                print_json(envelope)
            fail(f"job {job.id} ended {job.status}: {job.error or 'no result'}")
        result = envelope["result"]
    else:
        with spec_errors_end_command(show_input=True), ProgressBar("trials", enabled=not quiet) as bar:
            result = solve_in_process(X, y, planted_spec, k, weights, options,
                                      progress=lambda done, total, _: bar.update(done, total))
            asked = asked or default_trials()
            bar.describe(trials_sentence(len(result.get("trials") or []), asked,
                                         (result.get("certificate") or {}).get("global_optimum")))
        envelope = {"id": None, "status": "succeeded", "result": result}
    if as_json:
        print_json(envelope)
    else:
        render_solve_summary(result, job_id, asked)
