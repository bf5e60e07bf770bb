"""Flows of the downloads and of certificates (sans-I/O, as :mod:`._flows`): ``filter.npy``, ``result.npz``,
``model.onnx``, a dataset's ``data.npz``, a figure in PNG, SVG or PDF, and ``POST /v1/certificates`` (answered at
once, or queued and polled)."""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np

from ._errors import JobFailedError
from ._flows import Flow, HttpRequest, poll, request_flow, solve_body
from ._models import Certificate, FloatArray, Job

#: The formats a figure is downloaded in.
FIGURE_FORMATS = ("png", "svg", "pdf")


def download(path: str, *, max_retries: int, params: Mapping[str, Any] | None = None) -> Flow[bytes]:
    """``GET path`` and the body's bytes."""
    response = yield from request_flow(HttpRequest("GET", path, params=dict(params) if params else None,
                                                   headers={"Accept": "*/*"}), max_retries=max_retries)
    return response.content


def load_npy(content: bytes) -> FloatArray:
    array: FloatArray = np.load(io.BytesIO(content), allow_pickle=False)
    return array


def load_npz(content: bytes) -> dict[str, FloatArray]:
    with np.load(io.BytesIO(content), allow_pickle=False) as archive:
        return {name: np.asarray(archive[name]) for name in archive.files}


def figure_path(experiment_id: str, format: str) -> str:
    """The figure's route for ``format`` (png, svg or pdf); ``ValueError`` for another."""
    if format not in FIGURE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(FIGURE_FORMATS)}, got {format!r}.")
    return f"/v1/experiments/{experiment_id}/figure.{format}"


def certify_body(w: Any, X: Any, y: Any, dataset_id: str | None, planted: Mapping[str, Any] | None,
                 options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /v1/certificates``: a solve's body and the filter ``w``."""
    return solve_body(X, y, dataset_id=dataset_id, planted=planted,
                      options={**options, "w": np.asarray(w, dtype=np.float64).tolist()})


def certify(body: dict[str, Any], *, max_retries: int, timeout: float | None, poll_interval: float,
            max_poll_interval: float) -> Flow[Certificate]:
    """``POST /v1/certificates``; a 202 (a large problem, queued) is polled until its job ends."""
    response = yield from request_flow(HttpRequest("POST", "/v1/certificates", json=body), max_retries=max_retries)
    if response.status_code != 202:
        return Certificate.from_dict(response.json())
    job_id = str(response.json()["id"])

    def fetch(hold: float) -> Flow[Job]:
        params = {"wait": f"{hold:.3f}"} if hold > 0 else None
        answer = yield from request_flow(HttpRequest("GET", f"/v1/certificates/{job_id}", params=params,
                                                     extra_timeout=hold), max_retries=max_retries)
        return Job.from_dict(answer.json())

    job = yield from poll(fetch, timeout=timeout, progress=None, poll_interval=poll_interval,
                          max_poll_interval=max_poll_interval, what=f"certification {job_id}")
    result = job.raw.get("result")
    if job.status != "succeeded" or not isinstance(result, Mapping):
        raise JobFailedError(f"Certification {job_id} ended {job.status}: {job.error or 'no result'}", job=job)
    return Certificate.from_dict(result)
