"""Thin Python client of the cnnrelax service (needs only httpx and numpy).

>>> import numpy as np, cnnrelax_client                          # doctest: +SKIP
>>> with cnnrelax_client.Client("http://127.0.0.1:8000") as client:
...     result = client.solve_planted(n=500, d=20, k=1, seed=0)
...     print(result.w, result.certificate.global_optimum)

``Client`` blocks, ``AsyncClient`` is its awaitable twin. Every failure is a :class:`CnnrelaxError`
carrying the service's RFC 9457 problem details (``status``, ``title``, ``detail``, ``type``).
"""

from importlib.metadata import version

from ._client import DEFAULT_BASE_URL, AsyncClient, Client
from ._errors import CnnrelaxConnectionError, CnnrelaxError, CnnrelaxTimeoutError, JobFailedError
from ._models import (
    KKT,
    TERMINAL_STATUSES,
    Certificate,
    ConeCertificate,
    Coverage,
    Dataset,
    Experiment,
    Job,
    JobPage,
    JobStatus,
    Progress,
    SolveResult,
    SolverStats,
    Trial,
)
from ._torch import to_torch

__version__ = version("cnnrelax-client")  # from VERSION at the repository root, via the package metadata

__all__ = [
    "AsyncClient", "Certificate", "Client", "CnnrelaxConnectionError", "CnnrelaxError", "CnnrelaxTimeoutError",
    "ConeCertificate", "Coverage", "DEFAULT_BASE_URL", "Dataset", "Experiment", "Job", "JobFailedError", "JobPage",
    "JobStatus", "KKT", "Progress", "SolveResult", "SolverStats", "TERMINAL_STATUSES", "Trial", "to_torch",
]
