"""``/v1/solves``: submit, fetch (with a bounded wait), cancel and list solve jobs."""

from __future__ import annotations

import re
from typing import Optional

from fastapi import APIRouter, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ..store import decode_cursor, encode_cursor
from .bodies import read_body, require_json
from .dependencies import ServiceDep, TenantDep
from .problems import ApiError
from .schemas import CURSOR_MAX_LENGTH, CURSOR_PATTERN, JobOut, JobPage, JobStatus
from .service import MAX_WAIT_S
from .views import job_summary, job_view, mark_accepted

router = APIRouter(prefix="/v1/solves", tags=["solves"])

JOB_ID = Path(description="The job's id.", max_length=64)
IDEMPOTENCY_KEY = Header(None, alias="Idempotency-Key", max_length=255,
                         description="The same key with the same body returns the same job; with another body, 409.")


def not_found(job_id: str, what: str = "solve job") -> ApiError:
    return ApiError(404, f"No {what} has the id {job_id}.", title="Not found")


def parse_cursor(cursor: Optional[str]) -> Optional[int]:
    if cursor is None:
        return None
    try:
        if len(cursor) > CURSOR_MAX_LENGTH or not re.fullmatch(CURSOR_PATTERN, cursor):
            raise ValueError("not a cursor")
        return decode_cursor(cursor)
    except ValueError:
        raise ApiError(422, "The cursor is not one this server gave out; use next_cursor from a listing.",
                       title="Invalid cursor", parameter="cursor") from None


#: The request body of ``POST /v1/solves`` (read by the route itself, so that it is parsed off the event loop).
SOLVE_BODY = {"required": True,
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SolveRequest"}}}}


@router.post("", status_code=202, response_model=JobOut, summary="Submit a solve",
             openapi_extra={"requestBody": SOLVE_BODY})
async def submit_solve(request: Request, response: Response, service: ServiceDep, tenant: TenantDep,
                       idempotency_key: Optional[str] = IDEMPOTENCY_KEY) -> JobOut:
    """Queue a solve; answers 202 with the job and its `Location`.

    A replay (same `Idempotency-Key`, same body) answers the same 202 and job, with `Idempotent-Replayed: true`.
    Inline `data` is stored as a dataset of the caller's (source `inline`) and the job reads it from there.
    """
    require_json(request)
    parsed = await service.parser.parse(await read_body(request), "solve")
    spec = parsed.spec
    if spec is None:  # never: a solve body parses to its SolveSpec
        raise ApiError(500, "The solve body did not parse to a solve spec.")
    arrays = None if parsed.X is None or parsed.y is None else (parsed.X, parsed.y)
    job, created = await run_in_threadpool(lambda: service.accept_solve(
        spec, arrays, owner=tenant.owner, sees=tenant.sees, idempotency_key=idempotency_key))
    mark_accepted(response, f"/v1/solves/{job.id}", created)
    return job_view(job)


@router.get("/{job_id}", response_model=JobOut, summary="Get a solve job")
async def get_solve(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID,
                    wait: float = Query(0.0, ge=0, le=MAX_WAIT_S,
                                        description="Hold the answer up to this many seconds until the job ends.")
                   ) -> JobOut:
    """The job; with `wait`, answered as soon as it ends or after `wait` seconds."""
    job = await service.wait_for(job_id, "solve", wait, owner=tenant.sees, with_request=False)
    if job is None:
        raise not_found(job_id)
    return await run_in_threadpool(job_view, job)


@router.delete("/{job_id}", response_model=JobOut, responses={202: {"model": JobOut, "description":
                                                                     "Cancellation requested of a running job."}},
               summary="Delete or cancel a solve job")
def cancel_solve(response: Response, service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID) -> JobOut:
    """Remove a queued job (answered as cancelled) or a finished one (answered as it was), with its inline data
    no other job uses: 200, then 404. Ask a running job to stop: 202 (once it has stopped, DELETE removes it)."""
    deleted = service.delete(job_id, "solve", owner=tenant.sees)
    if deleted is None:
        raise not_found(job_id)
    job, removed = deleted
    response.status_code = 200 if removed else 202
    return job_view(job)


@router.get("", response_model=JobPage, summary="List solve jobs")
def list_solves(service: ServiceDep, tenant: TenantDep,
                status: Optional[JobStatus] = Query(None, description="Only jobs in this state."),
                limit: int = Query(50, ge=1, le=500, description="Jobs per page."),
                cursor: Optional[str] = Query(None, max_length=200, description="next_cursor of the previous page.")
               ) -> JobPage:
    """Solve jobs, newest first, a page at a time."""
    jobs, next_seq = service.require_store().list_jobs(kind="solve", status=status, limit=limit,
                                                       before_seq=parse_cursor(cursor), owner=tenant.sees)
    return JobPage(items=[job_summary(job) for job in jobs],
                   next_cursor=None if next_seq is None else encode_cursor(next_seq))
