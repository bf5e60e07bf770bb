"""``/v1/certificates``: the certificate of a filter the caller already has (:mod:`cnnrelax.certification`).

A small problem (at most ``certify_inline_entries`` patch entries, scaled by the directions it tests:
:func:`inline_work`) is certified at once and answered 200 with the
certificate object; a larger one is queued as a job of kind ``certify`` and answered 202 with the job, whose
``result`` is that certificate once it succeeded (``GET /v1/certificates/{id}``, ``DELETE`` to cancel).
"""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..certification import run_certify_job
from ..specs import CORE_DEFAULTS, Arrays, CertifySpec
from ..store import JobRecord
from ..types import JobKind
from .bodies import read_body, require_json
from .dependencies import ServiceDep, Tenant, TenantDep
from .problems import ApiError
from .schemas import CertificateOut, CertificationJobOut, JobStatus
from .service import MAX_WAIT_S, Service
from .solves import IDEMPOTENCY_KEY, JOB_ID, not_found
from .views import certification_view, mark_accepted

router = APIRouter(prefix="/v1/certificates", tags=["certificates"])

#: The request body of ``POST /v1/certificates`` (read by the route itself, off the event loop).
CERTIFY_BODY = {"required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CertifyRequest"}}}}


#: The directions a default certification tests (the default trials and coverage samples): the unit of its work.
DEFAULT_DIRECTIONS = CORE_DEFAULTS.trials + CORE_DEFAULTS.coverage_samples


def inline_work(spec: CertifySpec, entries: int) -> float:
    """The patch entries a certification is priced at: ``n*k*m`` scaled by the directions it tests (cone tests for
    ``trials`` directions, ``coverage_samples`` for the coverage) relative to the defaults'."""
    return entries * max(1.0, (spec.trials + spec.coverage_samples) / DEFAULT_DIRECTIONS)


def _certify_now_or_queue(service: Service, tenant: Tenant, spec: CertifySpec, arrays: Arrays | None,
                          idempotency_key: Optional[str]) -> tuple[dict[str, object] | None, JobRecord | None, bool]:
    """Certify a small problem here (the certificate's JSON), or queue a large one (the job and whether it is new)."""
    data = service.data_shape(spec, arrays, tenant.sees)
    entries = spec.check(data, service.limits)
    if inline_work(spec, entries) <= service.settings.certify_inline_entries:
        if arrays is None and spec.dataset_id is not None:
            arrays = service.require_store().load_dataset(spec.dataset_id)
        return run_certify_job(spec, arrays), None, False
    job, created = service.accept_solve(spec, arrays, owner=tenant.owner, sees=tenant.sees,
                                        idempotency_key=idempotency_key, kind=JobKind.certify)
    return None, job, created


@router.post("", response_model=CertificateOut, summary="Certify a filter",
             responses={202: {"model": CertificationJobOut, "description": "A large problem, queued as a job."}},
             openapi_extra={"requestBody": CERTIFY_BODY})
async def certify_filter(request: Request, response: Response, service: ServiceDep, tenant: TenantDep,
                         idempotency_key: Optional[str] = IDEMPOTENCY_KEY) -> CertificateOut | JSONResponse:
    """What is proven about the filter `w`: zero loss (a global minimum), the cone test (the trials' directions
    that would return it) and its coverage, stationarity and, under constraints, the KKT conditions; one sentence
    says what is proven and what is not. Small problems answer 200 with the certificate; large ones 202 with a job.
    """
    require_json(request)
    parsed = await service.parser.parse(await read_body(request), "certify")
    spec = parsed.spec
    if not isinstance(spec, CertifySpec):  # never: a certify body parses to its CertifySpec
        raise ApiError(500, "The certify body did not parse to a certify spec.")
    arrays = None if parsed.X is None or parsed.y is None else (parsed.X, parsed.y)
    certificate, job, created = await run_in_threadpool(_certify_now_or_queue, service, tenant, spec, arrays,
                                                        idempotency_key)
    if job is None:
        return CertificateOut.model_validate(certificate)
    accepted = JSONResponse(certification_view(job).model_dump(mode="json"), status_code=202)
    mark_accepted(accepted, f"/v1/certificates/{job.id}", created)
    return accepted


@router.get("/{job_id}", response_model=CertificationJobOut, summary="Get a certification job")
async def get_certification(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID,
                            wait: float = Query(0.0, ge=0, le=MAX_WAIT_S,
                                                description="Hold the answer up to this many seconds until it ends.")
                           ) -> CertificationJobOut:
    """A queued certification; with `wait`, answered as soon as it ends or after `wait` seconds."""
    job = await service.wait_for(job_id, JobKind.certify, wait, owner=tenant.sees, with_request=False)
    if job is None:
        raise not_found(job_id, "certification job")
    return await run_in_threadpool(certification_view, job)


@router.delete("/{job_id}", response_model=CertificationJobOut,
               responses={202: {"model": CertificationJobOut, "description": "Cancellation requested."}},
               summary="Cancel a certification job")
def cancel_certification(response: Response, service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID
                        ) -> CertificationJobOut:
    """Cancel a queued certification (200), or ask a running one to stop (202)."""
    job = service.cancel(job_id, JobKind.certify, owner=tenant.sees)
    if job is None:
        raise not_found(job_id, "certification job")
    response.status_code = 202 if job.status == JobStatus.running else 200
    return certification_view(job)
