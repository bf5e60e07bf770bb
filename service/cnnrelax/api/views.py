"""Store records to response schemas."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import Response

from ..experiments import partial_result
from ..experiments.specs import PhaseTransitionSpec, RotatedDigitsSpec, load_experiment_spec
from ..results import json_safe
from ..store import DatasetRecord, JobRecord
from ..types import JobStatus
from .schemas import (
    CertificateOut,
    CertificationJobOut,
    DatasetOut,
    ExperimentOut,
    JobOut,
    JobSummary,
    ProgressOut,
    SolveResultOut,
)
from .service import timestamp


def _progress(job: JobRecord) -> ProgressOut | None:
    if job.progress_total is None:
        return None
    # Trials run (or cells done) of those asked: a solve stopped early on a certificate ran fewer than asked.
    return ProgressOut(done=job.progress_done or 0, total=job.progress_total)


def _common(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id, "status": job.status, "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at), "finished_at": timestamp(job.finished_at),
        "attempts": job.attempts, "progress": _progress(job), "error": job.error,
        "estimated_cpu_s": job.estimated_cpu_s,
    }


def job_view(job: JobRecord) -> JobOut:
    result = job.result
    return JobOut(**_common(job), cancel_requested=job.cancel_requested,
                  result=None if result is None else SolveResultOut.model_validate(result))


def certification_view(job: JobRecord) -> CertificationJobOut:
    """A certification job (``POST /v1/certificates`` of a large problem): its result is the certificate object."""
    result = job.result
    return CertificationJobOut(**_common(job), cancel_requested=job.cancel_requested,
                               result=None if result is None else CertificateOut.model_validate(result))


def job_summary(job: JobRecord) -> JobSummary:
    return JobSummary(**_common(job))


def _experiment_result(job: JobRecord, spec: PhaseTransitionSpec | RotatedDigitsSpec) -> dict[str, Any] | None:
    """The stored result; for a run stopped from outside (no result written), the cells its progress kept."""
    result = job.result
    if result is None and job.status in (JobStatus.cancelled, JobStatus.failed):
        cells = (job.partial_state or {}).get("cells")
        if cells:
            partial: dict[str, Any] = json_safe(partial_result(spec, cells, 0.0))
            return partial
    return result


def experiment_view(job: JobRecord) -> ExperimentOut:
    spec = load_experiment_spec(job.request_json)  # the typed spec (a row stored before the types reads the same)
    return ExperimentOut.model_validate({  # the stored spec and result, typed (and checked) per kind
        **_common(job), "kind": spec.kind, "cancel_requested": job.cancel_requested,
        "spec": spec.public(), "result": _experiment_result(job, spec),
        "figure_url": f"/v1/experiments/{job.id}/figure.png" if job.status == JobStatus.succeeded else None,
    })


def dataset_view(record: DatasetRecord) -> DatasetOut:
    return DatasetOut.model_validate({
        "id": record.id, "n": record.n, "d": record.d, "size_bytes": record.size_bytes, "source": record.source,
        "created_at": datetime.fromtimestamp(record.created_at, tz=timezone.utc),
        "image_shape": None if record.image_shape is None else list(record.image_shape),
        "angles_given": record.angles_given if record.image_shape is not None else None})


def mark_accepted(response: Response, location: str, created: bool) -> None:
    """The 202's ``Location``; a replay of an Idempotency-Key is marked ``Idempotent-Replayed: true``."""
    response.headers["Location"] = location
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
