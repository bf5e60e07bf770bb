"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .dependencies import ServiceDep, TenantDep, require_api_key
from .problems import ApiError
from .schemas import Health, Readiness, ReadinessChecks

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process is up (answered on the event loop, never blocked by solves)."""
    return Health()


@router.get("/readyz", response_model=Readiness, summary="Readiness")
def readyz(service: ServiceDep) -> Readiness:
    """200 when the store answers and takes writes, the dispatcher and workers are up, the disk has room; else 503."""
    checks = {"store": False, "dispatcher": False, "workers": False, "disk": False}
    depth = running = 0
    fault = None
    try:
        store = service.require_store()
        fault = store.writable()  # a probe write at most each second (issue 16: a read-only or full store)
        checks["store"] = store.ping() and fault is None
        depth = store.queue_depth()
    except Exception:  # noqa: BLE001 - reported as a failed check
        checks["store"] = False
    free = None
    try:
        free = service.free_bytes()
        checks["disk"] = free >= service.settings.min_free_bytes
    except OSError:
        checks["disk"] = False
    dispatcher = service.dispatcher
    refused, refusal = 0, ""
    if dispatcher is not None:
        checks["dispatcher"] = dispatcher.alive()
        checks["workers"] = dispatcher.executor.healthy()
        running = dispatcher.running
        refused, refusal = dispatcher.refused()  # ends of runs the store would not take (a result too big to fit)
        checks["store"] = checks["store"] and refused == 0
    if not all(checks.values()):
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        detail = f"The service is not ready: {failing} not available."
        describe = getattr(dispatcher.executor, "describe", None) if dispatcher is not None else None
        if not checks["workers"] and callable(describe):  # e.g. the Dask executor names its scheduler
            detail = f"{detail} {describe()}"
        if fault is not None:
            detail = f"{detail} The store cannot take writes: {fault.reason}."
        if refused:
            detail = (f"{detail} The store refused the end of {refused} job(s) ({refusal}); they are retried until "
                      "it takes them.")
        if not checks["disk"]:
            detail = (f"{detail} The data directory has {free} bytes free, less than CNNRELAX_MIN_FREE_BYTES = "
                      f"{service.settings.min_free_bytes}.")
        raise ApiError(503, detail, title="Not ready",
                       headers={"Retry-After": "2"}, checks=checks)
    return Readiness(checks=ReadinessChecks(**checks), queue_depth=depth, running=running)


@router.get("/metrics", response_class=Response, dependencies=[Depends(require_api_key)], summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format."}})
def metrics(service: ServiceDep, tenant: TenantDep) -> Response:
    """The service's metrics in the Prometheus text format, for a Prometheus server to scrape (behind the API
    key when keys are configured: the scraper sends `X-API-Key`, e.g. with Prometheus's `http_headers` scrape
    setting). An admin key (or keys off) sees every tenant's figures; another key sees its own jobs' counts
    only. One process holds them (run one uvicorn worker). The series:

    - `cnnrelax_jobs{kind, state}`: jobs in the store by kind (`solve`, `experiment`) and state (`queued`,
      `running`, `succeeded`, `failed`, `cancelled`), read at scrape time;
    - `cnnrelax_queue_depth`: jobs waiting for a worker;
    - `cnnrelax_jobs_in_flight`: jobs this server's workers are running now;
    - `cnnrelax_job_run_seconds{kind, status}`: a histogram of finished jobs' run times (seconds);
    - `cnnrelax_jobs_finished_total{kind, status}`: jobs finished by this server since it started;
    - `cnnrelax_submissions_rejected_total`: submissions refused because a queue was full (429).
    """
    if tenant.sees is None:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
    body = service.metrics.tenant_exposition(service.require_store(), tenant.sees)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
