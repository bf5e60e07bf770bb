"""``/v1/datasets``: content-addressed uploads (.npy, .npz or JSON) reused by many solves."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..problem import InvalidParameterError
from ..store import DatasetInUse
from .dependencies import get_service
from .problems import ApiError
from .schemas import DATASET_ID_PATTERN, DatasetJson, DatasetOut, DatasetPage
from .service import Service
from .views import dataset_view

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

DATASET_ID = Path(description="The dataset's sha256 id.", pattern=DATASET_ID_PATTERN)
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"

UPLOAD_BODY = {
    "required": True,
    "description": "`.npz` with arrays `X` (n x d) and `y` (n); or `.npy` of one n x (d+1) array whose last "
                   "column is `y`; or JSON `{\"X\": [[...]], \"y\": [...]}`.",
    "content": {
        "application/x-npz": {"schema": {"type": "string", "format": "binary"}},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/DatasetJson"}},
    },
}


def _finite_float(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise InvalidParameterError(name, f"{name} must hold real numbers, got dtype {array.dtype}.")
    out = np.asarray(array, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InvalidParameterError(name, f"{name} contains NaN or infinite values.")
    return out


def _from_npy(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    array = np.load(io.BytesIO(body), allow_pickle=False)
    if array.ndim != 2 or array.shape[1] < 2:
        raise InvalidParameterError("body", f"A .npy dataset is one n x (d+1) array with y in the last column; got "
                                            f"shape {array.shape}.")
    return array[:, :-1], array[:, -1]


def _from_npz(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        missing = [name for name in ("X", "y") if name not in archive.files]
        if missing:
            raise InvalidParameterError("body", f"The .npz archive lacks {' and '.join(missing)}; it holds "
                                                f"{', '.join(archive.files) or 'nothing'}.")
        return archive["X"], archive["y"]


def parse_dataset(body: bytes, content_type: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``X``, ``y`` and the format of an upload; :class:`InvalidParameterError` for anything else."""
    if not body:
        raise InvalidParameterError("body", "The request body is empty: send a .npz, a .npy or JSON dataset.")
    media = content_type.split(";")[0].strip().lower()
    try:
        if media.endswith("json") or (media in ("", "text/plain") and body.lstrip()[:1] == b"{"):
            try:
                data = DatasetJson.model_validate_json(body)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first.get("loc", ())) or "body"
                raise InvalidParameterError(where, f"The JSON dataset is not valid at {where}: {first['msg']}.") from None
            source = "json"
            widths = {len(row) for row in data.X}
            if len(widths) > 1:
                raise InvalidParameterError("X", "The rows of X have different lengths; X must be an n x d matrix.")
            X = np.array(data.X, dtype=np.float64).reshape(len(data.X), -1)
            y = np.array(data.y, dtype=np.float64)
        elif body.startswith(NPY_MAGIC):
            (X, y), source = _from_npy(body), "npy"
        elif body.startswith(ZIP_MAGIC):
            (X, y), source = _from_npz(body), "npz"
        else:
            raise InvalidParameterError("body", f"The body is neither a .npy, a .npz nor JSON (Content-Type "
                                                f"{media or 'missing'}).")
    except InvalidParameterError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InvalidParameterError("body", f"The dataset could not be read ({message}).") from None
    X, y = _finite_float(np.asarray(X), "X"), _finite_float(np.asarray(y), "y")
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidParameterError("X", f"X must be a non-empty n x d matrix, got shape {X.shape}.")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InvalidParameterError("y", f"y must be a vector of the n={X.shape[0]} labels, got shape {y.shape}.")
    return X, y, source


def _store_upload(service: Service, body: bytes, content_type: str) -> tuple[DatasetOut, bool]:
    X, y, source = parse_dataset(body, content_type)
    if X.size > service.settings.max_matrix_entries:
        raise InvalidParameterError("X", f"X has {X.size} entries, more than this server takes "
                                         f"({service.settings.max_matrix_entries}).")
    record, created = service.require_store().put_dataset(X, y, source)
    return dataset_view(record), created


@router.post("", status_code=201, response_model=DatasetOut, openapi_extra={"requestBody": UPLOAD_BODY},
             responses={200: {"model": DatasetOut, "description": "The same content was stored before."}},
             summary="Upload a dataset")
async def upload_dataset(request: Request, response: Response,
                         service: Service = Depends(get_service)) -> DatasetOut:
    """Store X and y under the sha256 of their canonical content (201; 200 when already stored)."""
    body = await request.body()
    dataset, created = await run_in_threadpool(_store_upload, service, body, request.headers.get("content-type", ""))
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset


@router.get("", response_model=DatasetPage, summary="List datasets")
def list_datasets(service: Service = Depends(get_service)) -> DatasetPage:
    store = service.require_store()
    return DatasetPage(items=[dataset_view(record) for record in store.list_datasets()])


@router.get("/{dataset_id}", response_model=DatasetOut, summary="Get a dataset's metadata")
def get_dataset(dataset_id: str = DATASET_ID, service: Service = Depends(get_service)) -> DatasetOut:
    record = service.require_store().get_dataset(dataset_id)
    if record is None:
        raise ApiError(404, f"No dataset has the id {dataset_id}.", title="Not found")
    return dataset_view(record)


@router.delete("/{dataset_id}", status_code=204, response_class=Response, summary="Delete a dataset")
def delete_dataset(dataset_id: str = DATASET_ID, service: Service = Depends(get_service)) -> Response:
    """Remove a dataset (409 while queued or running solves read it)."""
    try:
        deleted = service.require_store().delete_dataset(dataset_id)
    except DatasetInUse as exc:
        raise ApiError(409, f"The dataset is in use by {len(exc.job_ids)} queued or running job(s) "
                            f"({', '.join(exc.job_ids[:3])}); cancel them or wait.", title="Dataset in use") from None
    if not deleted:
        raise ApiError(404, f"No dataset has the id {dataset_id}.", title="Not found")
    return Response(status_code=204)
