"""The command tree of ``cnnrelax``: the root typer app with ``--version``, its groups (``jobs``, ``experiment``,
``datasets``, ``experiments``), and every command registered on them here, in the order ``--help`` lists them;
the commands themselves live in one module each. :func:`main` runs the root app.

``load_problem_data`` and ``spec_shown`` stay importable from here, where callers have imported them."""

from __future__ import annotations

from typing import Callable

import typer

from .certify import certify
from .experiment import experiment_digits, experiment_phase_transition, spec_shown
from .inputs import load_problem_data, parse_planted
from .render import stdout
from .resources import (
    datasets_list,
    datasets_show,
    experiments_cancel,
    experiments_list,
    experiments_show,
    jobs_cancel,
    jobs_events,
    jobs_list,
    jobs_show,
    jobs_watch,
)
from .serve import default_data_dir, serve
from .solve import solve

__all__ = ["app", "default_data_dir", "load_problem_data", "main", "parse_planted", "spec_shown"]

app = typer.Typer(
    name="cnnrelax",
    help="Train one-hidden-layer convolutional ReLU nets by randomized convex relaxation, with certificates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="Inspect and cancel the solve jobs of a running service.", no_args_is_help=True)
experiment_app = typer.Typer(help="The paper's experiments: phase transitions (Fig. 1) and rotated digits "
                                  "(Table 1).", no_args_is_help=True)
datasets_app = typer.Typer(help="List and inspect the datasets stored in a running service.", no_args_is_help=True)
experiments_app = typer.Typer(help="List, inspect and cancel the experiments of a running service (run new ones "
                                   "with `cnnrelax experiment`).", no_args_is_help=True)

for command in (serve, solve, certify):
    app.command()(command)
#: Each group's commands by name, in ``--help`` order.
GROUP_COMMANDS: tuple[tuple[typer.Typer, dict[str, Callable[..., None]]], ...] = (
    (jobs_app, {"list": jobs_list, "show": jobs_show, "watch": jobs_watch, "events": jobs_events,
                "cancel": jobs_cancel}),
    (experiment_app, {"phase-transition": experiment_phase_transition, "digits": experiment_digits}),
    (datasets_app, {"list": datasets_list, "show": datasets_show}),
    (experiments_app, {"list": experiments_list, "show": experiments_show, "cancel": experiments_cancel}),
)
for group, commands in GROUP_COMMANDS:
    for name, function in commands.items():
        group.command(name)(function)
app.add_typer(jobs_app, name="jobs")
app.add_typer(experiment_app, name="experiment")
app.add_typer(datasets_app, name="datasets")
app.add_typer(experiments_app, name="experiments")


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        stdout.print(f"cnnrelax {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """Train one-hidden-layer convolutional ReLU nets by randomized convex relaxation, with certificates."""


def main() -> None:
    """Console-script entry point (``cnnrelax = cnnrelax.cli:main``; ``python -m cnnrelax.cli``)."""
    app()
