"""``cnnrelax certify``: certify a filter you already have against a data file or a planted problem, in this
process or on a service; print the certificate (one sentence says what is proven, then each measure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from .inputs import check_problem_source, load_problem_data, parse_output_weights, parse_planted, read_filter
from .local import certify_in_process, spec_errors_end_command
from .options import (
    ApiKeyOption,
    DataArgument,
    KOption,
    LabelsOption,
    OutputWeightsOption,
    ServiceTimeoutOption,
    in_process_url_option,
)
from .remote import from_service
from .render import print_json, render_certificate


def certify(
    data: Optional[Path] = DataArgument,
    w: str = typer.Option(..., "--w", help="The filter to certify: comma-separated numbers, or a .npy/.npz/.csv file."),
    labels: Optional[Path] = LabelsOption,
    planted: Optional[str] = typer.Option(None, "--planted", help="A planted problem instead of a file, "
                                          "e.g. n=2000,d=20,k=1,seed=0."),
    k: Optional[int] = KOption,
    trials: Optional[int] = typer.Option(None, min=1, help="Test the directions of this many trials (default: 8)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the trials' directions and of the coverage (default: 0)."),
    output_weights: Optional[str] = OutputWeightsOption,
    coverage_samples: Optional[int] = typer.Option(None, "--coverage-samples", min=0,
                                                   help="Directions sampled for the coverage (0 skips; default 64)."),
    activation: Optional[str] = typer.Option(None, "--activation", help="relu (default), leaky_relu, absolute, "
                                             "squared_relu or softplus."),
    negative_slope: Optional[float] = typer.Option(None, "--negative-slope", help="leaky_relu's slope (0, 1)."),
    constraints: Optional[str] = typer.Option(None, "--constraints", help="Constraints on w as JSON, e.g. "
                                              "'{\"lower\": -0.3, \"upper\": 0.3}'."),
    url: Optional[str] = in_process_url_option("the certificate is computed in this process"),
    api_key: Optional[str] = ApiKeyOption,
    timeout: Optional[float] = ServiceTimeoutOption,
    as_json: bool = typer.Option(False, "--json", help="Print the certificate as JSON only."),
) -> None:
    """Certify a filter you already have (from PyTorch or anywhere): zero loss, the cone test and its coverage,
    stationarity and, under constraints, the KKT conditions; one sentence says what is proven."""
    check_problem_source(data, planted)
    members: dict[str, Any] = {
        "w": read_filter(w), "planted": parse_planted(planted) if planted is not None else None, "k": k,
        "trials": trials, "seed": seed, "coverage_samples": coverage_samples, "activation": activation,
        "negative_slope": negative_slope, "output_weights": parse_output_weights(output_weights),
        "constraints": json.loads(constraints) if constraints else None,
    }
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    if data is not None:
        X, y = load_problem_data(data, labels)
    if url:
        options = {key: value for key, value in members.items() if key not in ("w", "planted") and value is not None}
        certificate = from_service(url, api_key, lambda client: client.certify(
            members["w"], X, y, planted=members["planted"], timeout=timeout, **options)).raw
    else:
        with spec_errors_end_command(show_input=False):
            certificate = certify_in_process(X, y, members)
    if as_json:
        print_json(certificate)
    else:
        render_certificate(certificate)
