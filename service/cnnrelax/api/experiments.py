"""``/v1/experiments``: the paper's experiments as jobs with progress, results and a PNG figure."""

from __future__ import annotations

import threading
from typing import Optional

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidParameterError
from ..experiments import list_cells
from ..experiments.common import MAX_DPI, MIN_DPI
from ..experiments.specs import PhaseTransitionSpec, RotatedDigitsSpec
from ..specs import price_experiment
from ..store import JobRecord, encode_cursor
from ..types import JobKind
from .bodies import read_body, require_json
from .dependencies import ServiceDep, Tenant, TenantDep
from .problems import ApiError
from .schemas import ExperimentOut, ExperimentPage, JobStatus
from .service import MAX_WAIT_S, Service, dataset_not_found
from .solves import IDEMPOTENCY_KEY, JOB_ID, not_found, parse_cursor
from .views import experiment_view, job_summary, mark_accepted

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
_RENDER_LOCK = threading.Lock()


def _accept_experiment(service: Service, tenant: Tenant, spec: PhaseTransitionSpec | RotatedDigitsSpec,
                       idempotency_key: Optional[str]) -> tuple[JobRecord, bool]:
    """Resolve stored images, check memory and price the typed spec from its shapes, and queue it (its JSON is what
    the worker reads back; a job on stored images names their dataset, which then stays while it is queued)."""
    dataset_id = None
    if isinstance(spec, RotatedDigitsSpec) and spec.images_dataset_id is not None:
        dataset_id = spec.images_dataset_id
        record = service.require_store().get_dataset(dataset_id, owner=tenant.sees)
        if record is None:
            raise dataset_not_found("images_dataset_id", dataset_id)
        if record.image_shape is None:
            raise InvalidParameterError("images_dataset_id", f"The dataset {dataset_id} holds X and y, not images: "
                                                             "upload a .npz with an `images` array (N x H x W) and "
                                                             "optional `angles`.")
        spec = spec.with_dataset(record.image_shape, record.n, record.angles_given)
    price_experiment(spec, service.limits)
    estimated_cpu_s = service.price(spec)
    return service.submit(JobKind.experiment, spec.model_dump_json(), idempotency_key=idempotency_key,
                          progress_total=len(list_cells(spec)), owner=tenant.owner, dataset_id=dataset_id,
                          estimated_cpu_s=estimated_cpu_s)


#: The request body of ``POST /v1/experiments`` (read by the route itself, so that it is parsed off the event loop).
EXPERIMENT_BODY = {"required": True,
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExperimentRequest"}}}}


@router.post("", status_code=202, response_model=ExperimentOut, summary="Start an experiment",
             openapi_extra={"requestBody": EXPERIMENT_BODY})
async def submit_experiment(request: Request, response: Response, service: ServiceDep, tenant: TenantDep,
                            idempotency_key: Optional[str] = IDEMPOTENCY_KEY) -> ExperimentOut:
    """Queue an experiment (phase transition or rotated digits); answers 202 with it and its `Location`."""
    require_json(request)
    parsed = await service.parser.parse(await read_body(request), "experiment",
                                        service.settings.max_experiment_numbers, "CNNRELAX_MAX_EXPERIMENT_NUMBERS")
    if parsed.experiment is None:  # pragma: no cover - the parser returns an experiment's typed spec
        raise ApiError(500, "The experiment request was not parsed into a spec.")
    job, created = await run_in_threadpool(_accept_experiment, service, tenant, parsed.experiment, idempotency_key)
    mark_accepted(response, f"/v1/experiments/{job.id}", created)
    return experiment_view(job)


@router.get("/{job_id}", response_model=ExperimentOut, summary="Get an experiment")
async def get_experiment(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID,
                         wait: float = Query(0.0, ge=0, le=MAX_WAIT_S,
                                             description="Hold the answer up to this many seconds until it ends.")
                        ) -> ExperimentOut:
    """The experiment: status, progress (`done` of `total` cells) and, once succeeded, its result."""
    job = await service.wait_for(job_id, "experiment", wait, owner=tenant.sees)
    if job is None:
        raise not_found(job_id, "experiment")
    return await run_in_threadpool(experiment_view, job)


def figure_bytes(service: Service, job_id: str, owner: str | None, format: str = "png",
                 dpi: int | None = None) -> bytes:
    """The figure of a succeeded experiment as ``format`` bytes at ``dpi`` (the default PNG is cached on disk)."""
    store = service.require_store()
    job = store.get_job(job_id, "experiment", owner=owner)
    if job is None:
        raise not_found(job_id, "experiment")
    if job.status != JobStatus.succeeded or job.result is None:
        raise ApiError(409, f"The experiment is {job.status}; its figure exists once it has succeeded.",
                       title="No figure yet")
    from ..experiments import render_figure

    if format != "png" or dpi is not None:  # rendered on demand: only the default PNG is kept
        with _RENDER_LOCK:  # pyplot keeps global state: one figure at a time
            return render_figure(job.result, format, dpi)
    path = store.data_dir / "figures" / f"{job.id}.png"
    if path.exists():
        return path.read_bytes()
    with _RENDER_LOCK:  # pyplot keeps global state: one figure at a time
        if path.exists():
            return path.read_bytes()
        png = render_figure(job.result)
        try:  # the figure is a cache: a full disk only means it is rendered again next time
            path.parent.mkdir(exist_ok=True)
            temporary = path.with_suffix(".tmp")
            try:
                temporary.write_bytes(png)
                temporary.replace(path)
            finally:
                temporary.unlink(missing_ok=True)
        except OSError:
            pass
    return png


#: The figure's resolution (dots per inch), bounded; absent: the default PNG, cached.
FIGURE_DPI = Query(None, ge=MIN_DPI, le=MAX_DPI, description=f"Resolution in dots per inch ({MIN_DPI} to "
                   f"{MAX_DPI}; for SVG and PDF, of their embedded raster images); default 100.")


@router.get("/{job_id}/figure.png", response_class=Response, summary="The experiment's figure",
            responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "A PNG image."}})
def experiment_figure(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID, dpi: Optional[int] = FIGURE_DPI
                     ) -> Response:
    """The figure of a succeeded experiment (heatmaps like the paper's Fig. 1, or the digits comparison); also as
    `figure.svg` and `figure.pdf`."""
    return Response(figure_bytes(service, job_id, tenant.sees, "png", dpi), media_type="image/png")


@router.delete("/{job_id}", response_model=ExperimentOut,
               responses={202: {"model": ExperimentOut, "description": "Cancellation requested."}},
               summary="Delete or cancel an experiment")
def cancel_experiment(response: Response, service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID
                     ) -> ExperimentOut:
    """Remove a queued experiment (answered as cancelled) or a finished one (answered as it was) with its figures:
    200, then 404. Ask a running one to stop: 202 (it keeps the cells it finished; DELETE it again to remove it)."""
    deleted = service.delete(job_id, "experiment", owner=tenant.sees)
    if deleted is None:
        raise not_found(job_id, "experiment")
    job, removed = deleted
    response.status_code = 200 if removed else 202
    return experiment_view(job)


@router.get("", response_model=ExperimentPage, summary="List experiments")
def list_experiments(service: ServiceDep, tenant: TenantDep,
                     status: Optional[JobStatus] = Query(None, description="Only experiments in this state."),
                     limit: int = Query(50, ge=1, le=500), cursor: Optional[str] = Query(None, max_length=200)
                    ) -> ExperimentPage:
    """Experiments, newest first, a page at a time."""
    jobs, next_seq = service.require_store().list_jobs(kind="experiment", status=status, limit=limit,
                                                       before_seq=parse_cursor(cursor), owner=tenant.sees)
    return ExperimentPage(items=[job_summary(job) for job in jobs],
                          next_cursor=None if next_seq is None else encode_cursor(next_seq))
