"""Thin Python client of the cnnrelax service (needs only httpx and numpy).

>>> import numpy as np, cnnrelax_client                          # doctest: +SKIP
>>> with cnnrelax_client.Client("http://127.0.0.1:8000") as client:
...     result = client.solve_planted(n=500, d=20, k=1, seed=0)
...     print(result.w, result.certificate.global_optimum)

``Client`` blocks, ``AsyncClient`` is its awaitable twin. Without arguments they talk to ``CNNRELAX_URL`` with
the key ``CNNRELAX_API_KEY`` (else ``http://127.0.0.1:8000``, no key). Solve options are typed
(:class:`SolveOptions`); ``client.events(job_id)`` follows a job's events (:class:`TrialEvent`, ...). Every
failure is a :class:`CnnrelaxError` carrying the service's RFC 9457 problem details (``status``, ``title``,
``detail``, ``type``).
"""

from importlib.metadata import version

from ._client import API_KEY_ENV, DEFAULT_BASE_URL, URL_ENV, AsyncClient, Client
from ._errors import CnnrelaxConnectionError, CnnrelaxError, CnnrelaxTimeoutError, JobFailedError
from ._events import CellEvent, EndEvent, JobEvent, LogEvent, StatusEvent, TrialEvent
from ._models import (
    KKT,
    TERMINAL_STATUSES,
    Certificate,
    ConeCertificate,
    Coverage,
    Dataset,
    DatasetPage,
    Experiment,
    ExperimentPage,
    Job,
    JobPage,
    JobStatus,
    Progress,
    SolveResult,
    SolverStats,
    Trial,
)
from ._options import SolveOptions, TrialOptions
from ._torch import to_torch

__version__ = version("cnnrelax-client")  # from VERSION at the repository root, via the package metadata

__all__ = [
    "API_KEY_ENV", "AsyncClient", "CellEvent", "Certificate", "Client", "CnnrelaxConnectionError", "CnnrelaxError",
    "CnnrelaxTimeoutError", "ConeCertificate", "Coverage", "DEFAULT_BASE_URL", "Dataset", "DatasetPage", "EndEvent",
    "Experiment", "ExperimentPage", "Job", "JobEvent", "JobFailedError", "JobPage", "JobStatus", "KKT", "LogEvent",
    "Progress", "SolveOptions", "SolveResult", "SolverStats", "StatusEvent", "TERMINAL_STATUSES", "Trial",
    "TrialEvent", "TrialOptions", "URL_ENV", "to_torch",
]
