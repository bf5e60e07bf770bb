"""Downloads: a solve's filter (``.npy``), its arrays (``.npz``) and its network (``.onnx``); a dataset (``.npz``);
an experiment's figure as SVG or PDF (beside ``figure.png``). Tenant-scoped like the JSON routes: another key's
job or dataset is a 404."""

from __future__ import annotations

import itertools
from typing import Any, Optional

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..dataset_files import npz_chunks
from ..experiments.common import FIGURE_MEDIA_TYPES
from ..export.arrays import filter_npy, result_npz
from ..export.network import network_from_description
from .datasets import DATASET_ID
from .dependencies import ServiceDep, TenantDep
from .experiments import FIGURE_DPI, figure_bytes
from .problems import ApiError
from .schemas import JobStatus
from .service import Service
from .solves import JOB_ID, not_found

router = APIRouter(tags=["downloads"])

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/x-npz"
ONNX_MEDIA_TYPE = "application/octet-stream"


def _binary(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
                  "description": description}}


def _attachment(content: bytes, media_type: str, filename: str) -> Response:
    return Response(content, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def succeeded_result(service: Service, job_id: str, owner: Optional[str]) -> dict[str, Any]:
    """The result of ``owner``'s succeeded solve ``job_id``: 404 when it is not theirs, 409 before it succeeded."""
    job = service.require_store().get_job(job_id, "solve", owner=owner, with_request=False)
    if job is None:
        raise not_found(job_id)
    result = job.result
    if job.status != JobStatus.succeeded or result is None:
        raise ApiError(409, f"The solve is {job.status}; its downloads exist once it has succeeded.",
                       title="No result yet")
    return result


@router.get("/v1/solves/{job_id}/filter.npy", response_class=Response, summary="Download the filter (.npy)",
            responses=_binary(NPY_MEDIA_TYPE, "The selected filter w, a float64 vector of length m."))
def download_filter(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID) -> Response:
    """The selected filter `w` as a `.npy` file (`numpy.load` reads it); 409 when the solve produced none."""
    result = succeeded_result(service, job_id, tenant.sees)
    if result.get("w") is None:
        raise ApiError(409, f"This solve produced no filter (status {result.get('status')}), so there is nothing to "
                            "download.", title="No filter")
    return _attachment(filter_npy(result), NPY_MEDIA_TYPE, f"{job_id}.npy")


@router.get("/v1/solves/{job_id}/result.npz", response_class=Response, summary="Download the result's arrays (.npz)",
            responses=_binary(NPZ_MEDIA_TYPE, "w, w_star (planted), r, trial_w, trial_w_polished, trial_loss, "
                                              "trial_raw_loss, trial_objective and loss, float64."))
def download_result(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID) -> Response:
    """Every array of the result: the filter, each trial's direction and filters, the losses (NaN for null)."""
    return _attachment(result_npz(succeeded_result(service, job_id, tenant.sees)), NPZ_MEDIA_TYPE, f"{job_id}.npz")


def _model(result: dict[str, Any]) -> bytes:
    from ..export.onnx import onnx_bytes  # onnx is imported on the first export only

    if result.get("w") is None:
        raise ApiError(409, f"This solve produced no filter (status {result.get('status')}), so there is no model.",
                       title="No filter")
    if result.get("network") is None:
        raise ApiError(409, "This result was stored before results described their network; solve again to export "
                            "its model.", title="No model")
    return onnx_bytes(network_from_description(result["network"], result["w"]))


@router.get("/v1/solves/{job_id}/model.onnx", response_class=Response, summary="Download the network (ONNX)",
            responses=_binary(ONNX_MEDIA_TYPE, "An ONNX model (opset 17): input X (N, d) float64, output y (N,)."))
def download_model(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID) -> Response:
    """The fitted network (patches, filter, activation, output weights' sum) as an ONNX model; it predicts as the
    service's network to rounding (onnxruntime runs it)."""
    model = _model(succeeded_result(service, job_id, tenant.sees))
    return _attachment(model, ONNX_MEDIA_TYPE, f"{job_id}.onnx")


@router.get("/v1/datasets/{dataset_id}/data.npz", response_class=Response, summary="Download a dataset (.npz)",
            responses=_binary(NPZ_MEDIA_TYPE, "Arrays X (n x d) and y (n), float64."))
def download_dataset(service: ServiceDep, tenant: TenantDep, dataset_id: str = DATASET_ID) -> Response:
    """The dataset as an `.npz` with `X` and `y` (`numpy.load` reads it): made from its two stored `.npy` files as it
    is sent (uncompressed), or the `.npz` a dataset stored before that layout is."""
    store = service.require_store()
    if store.get_dataset(dataset_id, owner=tenant.sees) is None:
        raise ApiError(404, f"No dataset has the id {dataset_id}.", title="Not found")
    location = store.dataset_path(dataset_id)
    chunks = npz_chunks(location)
    try:
        first = next(chunks)  # opens the files now: an open file survives a DELETE while it is sent
    except (FileNotFoundError, StopIteration):
        raise ApiError(404, f"No dataset has the id {dataset_id}.", title="Not found") from None
    headers = {"Content-Disposition": f'attachment; filename="{dataset_id}.npz"'}
    if location.suffix == ".npz":
        headers["Content-Length"] = str(location.stat().st_size)
    return StreamingResponse(itertools.chain([first], chunks), media_type=NPZ_MEDIA_TYPE, headers=headers)


def _figure_route(format: str) -> None:
    media_type = FIGURE_MEDIA_TYPES[format]

    async def figure(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID, dpi: Optional[int] = FIGURE_DPI
                    ) -> Response:
        content = await run_in_threadpool(figure_bytes, service, job_id, tenant.sees, format, dpi)
        return Response(content, media_type=media_type)

    figure.__doc__ = f"The figure of a succeeded experiment as {format.upper()} (as `figure.png`)."
    router.add_api_route(f"/v1/experiments/{{job_id}}/figure.{format}", figure, methods=["GET"],
                         response_class=Response, summary=f"The experiment's figure ({format.upper()})",
                         name=f"experiment_figure_{format}",
                         responses=_binary(media_type, f"A {format.upper()} image."))


for _format in ("svg", "pdf"):
    _figure_route(_format)
