"""The options several commands of the ``cnnrelax`` command line share (one definition each: same flag, same
help), and the environment variables they read."""

from __future__ import annotations

from typing import Any

import typer

DEFAULT_SERVICE_URL = "http://127.0.0.1:8000"
URL_ENV = "CNNRELAX_URL"
API_KEY_ENV = "CNNRELAX_API_KEY"


def in_process_url_option(without: str) -> Any:
    """``--url`` of a command that runs in this process without one: ``without`` says what then happens."""
    return typer.Option(None, "--url", envvar=URL_ENV, help=f"Service URL; without it {without}.")


#: ``--url`` of the commands that only talk to a service.
UrlOption = typer.Option(DEFAULT_SERVICE_URL, "--url", envvar=URL_ENV, help="Service URL.")
ApiKeyOption = typer.Option(None, "--api-key", envvar=API_KEY_ENV, help="X-API-Key for the service.")
#: ``--api-key`` of the experiment commands (no help line, as they always had).
ExperimentApiKeyOption = typer.Option(None, "--api-key", envvar=API_KEY_ENV)
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bar.")
#: ``--timeout`` of the commands that wait for a service's job (solve, certify).
ServiceTimeoutOption = typer.Option(None, help="Give up waiting for the service after this many seconds.")
#: ``--timeout`` of the commands that give up on their own work or on following a job.
TimeoutOption = typer.Option(None, help="Give up after this many seconds.")

#: The problem of solve and certify: a data file (with ``--labels``) or ``--planted``, ``--k``, output weights.
DataArgument = typer.Argument(
    None, help="Data file: .npz with arrays X and y, or .npy / .csv with y in the last column.", dir_okay=False)
LabelsOption = typer.Option(None, "--labels", "-y", dir_okay=False,
                            help="Labels in their own .npy / .csv file (then DATA is all X).")
KOption = typer.Option(None, "--k", "-k", min=1, help="Patches per row (d = k*m) (default: 1).")
OutputWeightsOption = typer.Option(None, help="Output weights c_j >= 0, comma-separated.")

#: ``--json`` of the experiment commands.
ExperimentJsonOption = typer.Option(False, "--json", help="Print the result as JSON.")
#: ``--set`` of the experiment commands.
SettingsOption = typer.Option([], "--set", help="Any other spec field, key=value (JSON values).")
