"""``cnnrelax experiment``: the paper's experiments, phase transitions (Fig. 1) and rotated digits (Table 1), in
this process or on a service, with a progress bar of their cells; print the result and write its figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .inputs import check_images_archive, parse_number_list, parse_settings
from .local import experiment_in_process
from .options import (
    ExperimentApiKeyOption,
    ExperimentJsonOption,
    QuietOption,
    SettingsOption,
    TimeoutOption,
    in_process_url_option,
)
from .remote import client_errors_end_command, service_client
from .render import ProgressBar, figure_format, print_json, render_experiment_summary, stdout, write_figure


def run_experiment_command(spec: dict[str, Any], out: Path | None, url: str | None, api_key: str | None,
                           timeout: float | None, as_json: bool, quiet: bool, images_file: Path | None = None) -> None:
    """Run an experiment against a service or in-process, with a progress bar; save its figure in the format its
    suffix names (png, svg or pdf). ``images_file`` (an ``.npz`` of ``images`` and optional ``angles``) goes to
    a service as a stored image set, uploaded first and named by ``images_dataset_id`` (so sets of any size
    the dataset limits allow, MNIST's included, are not sent inline); in-process it is read into the spec."""
    if out is not None:
        figure_format(out)  # a wrong suffix is refused before any work
    label = str(spec["kind"]).replace("_", " ")
    figure: bytes | None = None
    experiment_id: str | None = None
    if url:
        client = service_client(url, api_key)
        with client_errors_end_command(), client, ProgressBar(label, enabled=not quiet) as bar:
            if images_file is not None:
                spec["images_dataset_id"] = client.upload_images(images_file).id

            def on_snapshot(snapshot: Any) -> None:
                if snapshot.progress is not None:
                    bar.update(snapshot.progress.done, snapshot.progress.total)

            experiment = client.run_experiment(spec, progress=on_snapshot, timeout=timeout)
            experiment_id = experiment.id
            result = experiment.result or {}
            if out is not None:
                figure = client.download_figure(experiment, figure_format(out))
    else:
        with ProgressBar(label, enabled=not quiet) as bar:
            result = experiment_in_process(spec, images_file, timeout,
                                           progress=lambda done, total, _: bar.update(done, total))
        if out is not None:
            from ..experiments import render_figure

            figure = render_figure(result, figure_format(out))
    if figure is not None and out is not None:
        write_figure(out, figure)
    if as_json:
        print_json({"id": experiment_id, "status": "succeeded", "spec": spec_shown(spec), "result": result})
        return
    render_experiment_summary(spec, result)
    if out is not None:
        stdout.print(f"figure written to {out}")


def spec_shown(spec: dict[str, Any]) -> dict[str, Any]:
    """An experiment's spec as printed: inline ``images`` and ``angles`` as their shapes (as the API shows them),
    not every number again."""
    shown = dict(spec)
    for name in ("images", "angles"):
        value = shown.get(name)
        if isinstance(value, list):
            shape: list[int] = []
            while isinstance(value, list):
                shape.append(len(value))
                value = value[0] if value else None
            shown[name] = {"shape": shape}
    return shown


def experiment_phase_transition(
    k: int = typer.Option(1, "--k", "-k", min=1, help="Patches per row."),
    d: str = typer.Option("10,20,30", "--d", help="Grid of input dimensions, comma-separated."),
    n: str = typer.Option("25,50,100,200", "--n", help="Grid of sample counts, comma-separated."),
    repetitions: int = typer.Option(5, min=1, help="Planted problems per cell (the paper uses 20)."),
    methods: str = typer.Option("relaxation,gradient_descent",
                                help="Comma-separated: relaxation, gradient_descent, pseudo_inverse."),
    trials: Optional[int] = typer.Option(None, min=1, help="Relaxation trials per repetition."),
    seed: int = typer.Option(0, help="Seed of the whole sweep."),
    extra: list[str] = SettingsOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", dir_okay=False,
                                       help="Write the heatmaps here (.png, .svg or .pdf)."),
    url: Optional[str] = in_process_url_option("the sweep runs in this process"),
    api_key: Optional[str] = ExperimentApiKeyOption,
    timeout: Optional[float] = TimeoutOption,
    as_json: bool = ExperimentJsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Paper Fig. 1: recovery error and success rate over a (d, n) grid, per method."""
    spec: dict[str, Any] = {
        "kind": "phase_transition", "k": k, "d": parse_number_list(d, "--d", int),
        "n": parse_number_list(n, "--n", int), "repetitions": repetitions,
        "methods": [m.strip() for m in methods.split(",") if m.strip()], "seed": seed,
    }
    if trials is not None:
        spec["trials"] = trials
    spec.update(parse_settings(extra))
    run_experiment_command(spec, out, url, api_key, timeout, as_json, quiet)


def experiment_digits(
    seed: int = typer.Option(0, help="First replicate seed (rotations, split, relaxation, random filters)."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Replicate seeds seed, seed+1, ... (default: 5)."),
    max_images: Optional[int] = typer.Option(None, min=10, help="Use only this many images (a quick run)."),
    angles_per_image: Optional[int] = typer.Option(None, min=1, help="Rotated copies of each image (default: 2)."),
    filters: Optional[int] = typer.Option(None, min=1, help="Filters learned per patch shape (default: 2)."),
    images: Optional[Path] = typer.Option(None, "--images", dir_okay=False,
                                          help="Your own images: .npz with 'images' (N x H x W), optional 'angles'; "
                                               "with --url uploaded once as a stored image set."),
    extra: list[str] = SettingsOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", dir_okay=False,
                                       help="Write the figure here (.png, .svg or .pdf)."),
    url: Optional[str] = in_process_url_option("the experiment runs in this process"),
    api_key: Optional[str] = ExperimentApiKeyOption,
    timeout: Optional[float] = TimeoutOption,
    as_json: bool = ExperimentJsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Paper Table 1: predict rotation angles of digits (8x8, or your own images), raw pixels vs. + learned filter."""
    spec: dict[str, Any] = {"kind": "rotated_digits", "seed": seed}
    for key, value in (("seeds", seeds), ("max_images", max_images), ("angles_per_image", angles_per_image),
                       ("filters", filters)):
        if value is not None:
            spec[key] = value
    if images is not None:
        check_images_archive(images)
    spec.update(parse_settings(extra))
    run_experiment_command(spec, out, url, api_key, timeout, as_json, quiet, images_file=images)
