"""Sans-I/O flows shared by :class:`Client` and :class:`AsyncClient`.

Every operation is written once, as a generator that yields :class:`HttpRequest` (and receives the
``httpx.Response``) or :class:`Sleep` (and receives ``None``), and returns its value. The sync client
drives the generators with ``httpx.Client`` and ``time.sleep``; the async one with ``httpx.AsyncClient``
and ``asyncio.sleep``. So the two clients cannot drift apart.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Generator, Mapping, TypeVar

import httpx
import numpy as np
import numpy.typing as npt

from ._errors import CnnrelaxError, CnnrelaxTimeoutError, JobFailedError
from ._models import Dataset, DatasetPage, Experiment, ExperimentPage, Job, JobPage, SolveResult

T = TypeVar("T")
ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request to send; ``extra_timeout`` is added to the client's timeout (for long polls)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra_timeout: float = 0.0


@dataclass(frozen=True)
class Sleep:
    """Pause the flow for ``seconds``."""

    seconds: float


Step = HttpRequest | Sleep
Flow = Generator[Step, Any, T]

#: Statuses after which a request was not accepted and may be sent again once ``Retry-After`` passes.
RETRYABLE_STATUSES = frozenset({429, 503})


def retry_after_seconds(response: httpx.Response, default: float) -> float:
    """The delay a ``Retry-After`` header asks for (seconds or an HTTP date), else ``default``."""
    value = response.headers.get("Retry-After")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


def request_flow(request: HttpRequest, *, max_retries: int, max_retry_delay: float = 30.0) -> Flow[httpx.Response]:
    """Send ``request``; retry 429/503 answers after their ``Retry-After``; raise on any other 4xx/5xx."""
    attempt = 0
    while True:
        response: httpx.Response = yield request
        if response.status_code < 400:
            return response
        if response.status_code in RETRYABLE_STATUSES and attempt < max_retries:
            attempt += 1
            yield Sleep(min(retry_after_seconds(response, default=0.5 * 2 ** attempt), max_retry_delay))
            continue
        raise CnnrelaxError.from_response(response)


def to_list(value: Any) -> Any:
    """Numpy arrays and scalars to plain JSON values; everything else unchanged."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def solve_body(
    X: ArrayLike | None,
    y: ArrayLike | None,
    *,
    dataset_id: str | None,
    planted: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/solves``: exactly one problem source plus the non-``None`` options."""
    sources = sum([X is not None or y is not None, dataset_id is not None, planted is not None])
    if sources != 1:
        raise ValueError("Give exactly one problem source: X and y, dataset_id, or planted.")
    body: dict[str, Any] = {}
    if X is not None or y is not None:
        if X is None or y is None:
            raise ValueError("X and y go together: give both.")
        body["data"] = {"X": np.asarray(X, dtype=np.float64).tolist(), "y": np.asarray(y, dtype=np.float64).tolist()}
    elif dataset_id is not None:
        body["dataset_id"] = dataset_id
    else:
        body["planted"] = {key: to_list(value) for key, value in dict(planted or {}).items()}
    for key, value in options.items():
        if value is not None:
            body[key] = to_list(value)
    return body


def npz_bytes(X: ArrayLike, y: ArrayLike) -> bytes:
    """``X`` and ``y`` as an uncompressed ``.npz`` archive (arrays named ``X`` and ``y``)."""
    buffer = io.BytesIO()
    np.savez(buffer, X=np.asarray(X, dtype=np.float64), y=np.asarray(y, dtype=np.float64))
    return buffer.getvalue()


def images_npz_bytes(images: str | os.PathLike[str] | ArrayLike, angles: ArrayLike | None) -> bytes:
    """The body of an image-set upload: an ``.npz`` file's bytes as they are (the service checks it holds
    ``images``, ``N x H x W``, and optional ``angles``), or ``images`` (and ``angles``) as a compressed
    ``.npz`` archive in their own dtype (``uint8`` stays small)."""
    if isinstance(images, (str, os.PathLike)):
        if angles is not None:
            raise ValueError("angles go into the .npz file beside images; give either a path or arrays.")
        with open(images, "rb") as file:
            return file.read()
    buffer = io.BytesIO()
    if angles is None:
        np.savez_compressed(buffer, images=np.asarray(images))
    else:
        np.savez_compressed(buffer, images=np.asarray(images), angles=np.asarray(angles, dtype=np.float64))
    return buffer.getvalue()


def experiment_body(spec: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /v1/experiments`` from a spec dict and/or keyword arguments."""
    body = {key: to_list(value) for key, value in dict(spec or {}).items()}
    body.update({key: to_list(value) for key, value in overrides.items() if value is not None})
    if "kind" not in body:
        raise ValueError('An experiment needs a "kind": "phase_transition" or "rotated_digits".')
    return body


class Endpoints:
    """The flows of every endpoint; ``max_retries`` applies to 429/503 answers."""

    def __init__(self, *, max_retries: int) -> None:
        self.max_retries = max_retries

    def _send(self, request: HttpRequest) -> Flow[httpx.Response]:
        return request_flow(request, max_retries=self.max_retries)

    # -- health ---------------------------------------------------------------------------------
    def health(self) -> Flow[dict[str, Any]]:
        response = yield from self._send(HttpRequest("GET", "/healthz"))
        return _json_or_empty(response)

    # -- solves ---------------------------------------------------------------------------------
    def submit(self, body: dict[str, Any], idempotency_key: str | None) -> Flow[Job]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = yield from self._send(HttpRequest("POST", "/v1/solves", json=body, headers=headers))
        return Job.from_dict(response.json())

    def get(self, job_id: str, wait: float | None = None) -> Flow[Job]:
        params = None if not wait else {"wait": _seconds(wait)}
        response = yield from self._send(
            HttpRequest("GET", f"/v1/solves/{job_id}", params=params, extra_timeout=wait or 0.0))
        return Job.from_dict(response.json())

    def cancel(self, job_id: str) -> Flow[Job]:
        response = yield from self._send(HttpRequest("DELETE", f"/v1/solves/{job_id}"))
        if response.status_code == 204 or not response.content:
            return (yield from self.get(job_id))
        return Job.from_dict(response.json())

    def list_jobs(self, status: str | None, limit: int | None, cursor: str | None) -> Flow[JobPage]:
        params = {key: value for key, value in {"status": status, "limit": limit, "cursor": cursor}.items()
                  if value is not None}
        response = yield from self._send(HttpRequest("GET", "/v1/solves", params=params))
        return JobPage.from_dict(response.json())

    def wait(
        self,
        job_id: str,
        timeout: float | None,
        progress: Callable[[Job], None] | None,
        poll_interval: float,
        max_poll_interval: float,
    ) -> Flow[Job]:
        return (yield from poll(lambda wait: self.get(job_id, wait), timeout=timeout, progress=progress,
                                poll_interval=poll_interval, max_poll_interval=max_poll_interval,
                                what=f"solve {job_id}"))

    # -- datasets -------------------------------------------------------------------------------
    def upload_dataset(self, X: ArrayLike, y: ArrayLike) -> Flow[Dataset]:
        request = HttpRequest("POST", "/v1/datasets", content=npz_bytes(X, y),
                              headers={"Content-Type": "application/x-npz"})
        response = yield from self._send(request)
        return Dataset.from_dict(response.json())

    def upload_images(self, images: str | os.PathLike[str] | ArrayLike, angles: ArrayLike | None) -> Flow[Dataset]:
        request = HttpRequest("POST", "/v1/datasets", content=images_npz_bytes(images, angles),
                              headers={"Content-Type": "application/x-npz"})
        response = yield from self._send(request)
        return Dataset.from_dict(response.json())

    def get_dataset(self, dataset_id: str) -> Flow[Dataset]:
        response = yield from self._send(HttpRequest("GET", f"/v1/datasets/{dataset_id}"))
        return Dataset.from_dict(response.json())

    def list_datasets(self) -> Flow[DatasetPage]:
        response = yield from self._send(HttpRequest("GET", "/v1/datasets"))
        return DatasetPage.from_dict(response.json())

    def delete_dataset(self, dataset_id: str) -> Flow[None]:
        yield from self._send(HttpRequest("DELETE", f"/v1/datasets/{dataset_id}"))
        return None

    # -- experiments ----------------------------------------------------------------------------
    def submit_experiment(self, body: dict[str, Any], idempotency_key: str | None) -> Flow[Experiment]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = yield from self._send(HttpRequest("POST", "/v1/experiments", json=body, headers=headers))
        return Experiment.from_dict(response.json())

    def get_experiment(self, experiment_id: str, wait: float | None = None) -> Flow[Experiment]:
        params = None if not wait else {"wait": _seconds(wait)}
        response = yield from self._send(
            HttpRequest("GET", f"/v1/experiments/{experiment_id}", params=params, extra_timeout=wait or 0.0))
        return Experiment.from_dict(response.json())

    def cancel_experiment(self, experiment_id: str) -> Flow[Experiment]:
        response = yield from self._send(HttpRequest("DELETE", f"/v1/experiments/{experiment_id}"))
        if response.status_code == 204 or not response.content:
            return (yield from self.get_experiment(experiment_id))
        return Experiment.from_dict(response.json())

    def list_experiments(self, status: str | None, limit: int | None, cursor: str | None) -> Flow[ExperimentPage]:
        params = {key: value for key, value in {"status": status, "limit": limit, "cursor": cursor}.items()
                  if value is not None}
        response = yield from self._send(HttpRequest("GET", "/v1/experiments", params=params))
        return ExperimentPage.from_dict(response.json())

    def wait_experiment(self, experiment_id: str, timeout: float | None,
                        progress: Callable[[Experiment], None] | None, poll_interval: float,
                        max_poll_interval: float) -> Flow[Experiment]:
        return (yield from poll(lambda wait: self.get_experiment(experiment_id, wait), timeout=timeout,
                                progress=progress, poll_interval=poll_interval,
                                max_poll_interval=max_poll_interval, what=f"experiment {experiment_id}"))

    def experiment_figure(self, experiment_id: str) -> Flow[bytes]:
        response = yield from self._send(HttpRequest("GET", f"/v1/experiments/{experiment_id}/figure.png"))
        return response.content


J = TypeVar("J", Job, Experiment)


def solve_succeeded(job: Job) -> SolveResult:
    """The result of a finished solve; :class:`JobFailedError` when it ended failed or cancelled."""
    if job.status != "succeeded" or job.result is None:
        raise JobFailedError(f"Solve {job.id} ended {job.status}: {job.error or 'no result'}", job=job)
    return job.result


def experiment_succeeded(experiment: Experiment) -> Experiment:
    """A finished experiment that succeeded; :class:`JobFailedError` when it ended failed or cancelled."""
    if experiment.status != "succeeded":
        raise JobFailedError(f"Experiment {experiment.id} ended {experiment.status}: "
                             f"{experiment.error or 'no result'}", job=experiment)
    return experiment


def poll(
    fetch: Callable[[float], Flow[J]],
    *,
    timeout: float | None,
    progress: Callable[[J], None] | None,
    poll_interval: float,
    max_poll_interval: float,
    what: str,
    backoff: float = 1.6,
) -> Flow[J]:
    """Poll until a terminal status, with exponentially growing intervals (capped at ``max_poll_interval``).

    Each poll asks the server to hold the answer up to the current interval (``?wait=``), so a job that
    finishes is seen at once; a server that answers at once is polled after sleeping the rest of it.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = poll_interval
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        hold = interval if remaining is None else max(0.0, min(interval, remaining))
        started = time.monotonic()
        snapshot = yield from fetch(hold)
        if progress is not None:
            progress(snapshot)
        if snapshot.done:
            return snapshot
        if deadline is not None and time.monotonic() >= deadline:
            raise CnnrelaxTimeoutError(
                f"Gave up waiting for {what} after {timeout:g} s; it is still {snapshot.status} on the server.",
                title="Client wait timed out")
        rest = interval - (time.monotonic() - started)
        if deadline is not None:
            rest = min(rest, deadline - time.monotonic())
        if rest > 0:
            yield Sleep(rest)
        interval = min(interval * backoff, max_poll_interval)


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {"value": data}
