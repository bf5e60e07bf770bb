"""``/v1/datasets``: content-addressed uploads (.npy, .npz or JSON) reused by many solves.

An upload is priced before anything is decoded: a ``.npy`` body by its header (shape, dtype, and that
the data it declares is what the body holds), a ``.npz`` body by its zip directory (the members' declared
uncompressed sizes, so a zip bomb is refused without inflating it) and by each member's ``.npy`` header,
a JSON body by its commas. Datasets belong to the API key that uploaded them.
"""

from __future__ import annotations

import io
import zipfile
from typing import IO, Any

import numpy as np
from fastapi import APIRouter, Path, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from ..datafiles import checked_dataset, image_set, npz_arrays, split_labels
from ..errors import InvalidParameterError
from ..specs import LimitExceeded
from ..store import DatasetInUse
from .bodies import ParsedBody, read_body
from .dependencies import ServiceDep, TenantDep
from .problems import ApiError
from .schemas import DATASET_ID_PATTERN, DatasetJson, DatasetOut, DatasetPage
from .service import Service
from .views import dataset_view

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

DATASET_ID = Path(description="The dataset's sha256 id.", pattern=DATASET_ID_PATTERN)


class DatasetIdSegment(Convertor[str]):
    """The path segment of a dataset's id: any segment but ``uploads``, the collection of the uploads in parts
    (``/v1/datasets/uploads``), so that a method that collection lacks is a 405 there, not a dataset id's 422.
    A malformed id still reaches the route (a 422 naming ``dataset_id``)."""

    regex = "(?!uploads(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("dataset_id", DatasetIdSegment())
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"

UPLOAD_BODY = {
    "required": True,
    "description": "`.npz` with arrays `X` (n x d) and `y` (n); or `.npy` of one n x (d+1) array whose last "
                   "column is `y`; or JSON `{\"X\": [[...]], \"y\": [...]}`; or, for rotated digits "
                   "(`images_dataset_id`), `.npz` with `images` (N x H x W) and optional `angles` (N).",
    "content": {
        "application/x-npz": {"schema": {"type": "string", "format": "binary"}},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/DatasetJson"}},
    },
}


#: Members an ``.npz`` dataset may hold (``X``, ``y`` and a few others, which are ignored).
MAX_NPZ_MEMBERS = 16


def _npy_header(stream: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of a ``.npy`` stream, from its header alone (nothing else is read)."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, EOFError, OSError) as exc:
        raise InvalidParameterError("body", f"The .npy header of {name} could not be read "
                                            f"({str(exc)[:200]}).") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InvalidParameterError(name, f"{name} must hold real numbers, got dtype {dtype}.")
    return tuple(int(v) for v in shape), dtype


def price_arrays(declared: dict[str, tuple[tuple[int, ...], np.dtype[Any]]], max_entries: int, kind: str) -> None:
    """422 when the declared shapes hold more than ``max_entries`` numbers (``CNNRELAX_MAX_MATRIX_ENTRIES``)."""
    total = sum(int(np.prod(shape, dtype=object)) for shape, _ in declared.values())
    if total > max_entries:
        shapes = ", ".join(f"{name} {shape}" for name, (shape, _) in declared.items())
        raise LimitExceeded("body", f"The {kind} declares {total} numbers ({shapes}), more than this server takes in "
                                    "one dataset.", limit=max_entries, setting="CNNRELAX_MAX_MATRIX_ENTRIES")


def _check_npy(body: bytes, max_entries: int) -> None:
    """Price a ``.npy`` body by its header, and check the header tells the truth about the body's length."""
    stream = io.BytesIO(body)
    shape, dtype = _npy_header(stream, "X")
    price_arrays({"array": (shape, dtype)}, max_entries + max(1, shape[0] if shape else 1), ".npy body")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = len(body) - stream.tell()
    if declared != held:
        raise InvalidParameterError("body", f"The .npy header declares shape {shape} of {dtype} ({declared} bytes of "
                                            f"data) but the body holds {held} bytes after it.")


def _check_npz(body: bytes, max_entries: int) -> None:
    """Price a ``.npz`` body from its zip directory and its members' ``.npy`` headers, inflating nothing else."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InvalidParameterError("body", f"The dataset could not be read ({str(exc)[:200]}).") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_NPZ_MEMBERS:
            raise InvalidParameterError("body", f"The .npz archive holds {len(members)} members; a dataset has X and y "
                                                f"(at most {MAX_NPZ_MEMBERS} members).")
        declared_bytes = sum(member.file_size for member in members)
        limit_bytes = 8 * max_entries + 4096 * len(members)
        if declared_bytes > limit_bytes:
            raise LimitExceeded("body", f"The .npz members declare {declared_bytes} bytes uncompressed, more than this "
                                        "server inflates for one dataset.", limit=limit_bytes,
                                setting="CNNRELAX_MAX_MATRIX_ENTRIES (8 bytes per entry)")
        shapes: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
        for member in members:
            name = member.filename.removesuffix(".npy")
            if name not in ("X", "y", "images", "angles"):
                continue
            if member.flag_bits & 0x1:
                raise InvalidParameterError("body", "Encrypted .npz members are not accepted.")
            try:
                with archive.open(member) as stream:
                    shape, dtype = _npy_header(stream, name)
                    header_length = stream.tell() if stream.seekable() else None
            except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
                raise InvalidParameterError("body", f"The .npz member {member.filename} could not be read "
                                                    f"({str(exc)[:200]}).") from None
            data_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if header_length is not None and header_length + data_bytes != member.file_size:
                raise InvalidParameterError(name, f"The .npy header of {name} declares shape {shape} of {dtype} "
                                                  f"({data_bytes} bytes) but the member holds "
                                                  f"{member.file_size - header_length} bytes of data.")
            shapes[name] = (shape, dtype)
        price_arrays(shapes, max_entries + max((s[0] for s, _ in shapes.values() if s), default=0), ".npz body")


def _from_npy(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A view of the body's array (no copy: the float64 conversion is the one copy made)."""
    stream = io.BytesIO(body)
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(stream)
    if dtype.hasobject:
        raise InvalidParameterError("body", f"A .npy dataset holds numbers, got dtype {dtype}.")
    count = int(np.prod(shape, dtype=object))
    array = np.frombuffer(body, dtype=dtype, count=count, offset=stream.tell()).reshape(
        shape, order="F" if fortran else "C")
    return split_labels(array)


def _from_npz(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        X, y = npz_arrays(archive, tuple(archive.files))
        return np.asarray(X), np.asarray(y)


def is_json_upload(body: bytes, content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media.endswith("json") or (media in ("", "text/plain") and body.lstrip()[:1] == b"{")


def parse_dataset(body: bytes, content_type: str, max_entries: int | None = None,
                  parsed: ParsedBody | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """``X``, ``y`` and the format of an upload; :class:`InvalidParameterError` for anything else.

    Parameters
    ----------
    body : bytes
        The upload.
    content_type : str
        Its Content-Type header.
    max_entries : int, optional
        The most numbers a dataset may hold; binary bodies are priced by their headers against it before
        they are decoded.
    parsed : ParsedBody, optional
        A JSON body already parsed (off the event loop) by :class:`~cnnrelax.api.bodies.BodyParser`.

    Returns
    -------
    tuple
        ``X`` (n x d), ``y`` (n), both float64, and the format (``json``, ``npy`` or ``npz``).
    """
    if not body:
        raise InvalidParameterError("body", "The request body is empty: send a .npz, a .npy or JSON dataset.")
    media = content_type.split(";")[0].strip().lower()
    try:
        if parsed is not None or is_json_upload(body, content_type):
            if parsed is None:
                try:
                    data = DatasetJson.model_validate_json(body)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
                    raise InvalidParameterError(where, f"The JSON dataset is not valid at {where}: "
                                                       f"{first['msg']}.") from None
                widths = {len(row) for row in data.X}
                if len(widths) > 1:
                    raise InvalidParameterError("X", "The rows of X have different lengths; X must be an n x d matrix.")
                X = np.array(data.X, dtype=np.float64).reshape(len(data.X), -1)
                y = np.array(data.y, dtype=np.float64)
            else:
                if parsed.X is None or parsed.y is None:  # never: a JSON dataset parses to its arrays
                    raise InvalidParameterError("body", "The JSON dataset holds no X and y.")
                X, y = parsed.X, parsed.y
            source = "json"
        elif body.startswith(NPY_MAGIC):
            if max_entries is not None:
                _check_npy(body, max_entries)
            (X, y), source = _from_npy(body), "npy"
        elif body.startswith(ZIP_MAGIC):
            if max_entries is not None:
                _check_npz(body, max_entries)
            (X, y), source = _from_npz(body), "npz"
        else:
            raise InvalidParameterError("body", f"The body is neither a .npy, a .npz nor JSON (Content-Type "
                                                f"{media or 'missing'}).")
    except InvalidParameterError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InvalidParameterError("body", f"The dataset could not be read ({message}).") from None
    X, y = checked_dataset(X, y)
    return X, y, source


def _image_npz(body: bytes, max_entries: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int], bool] | None:
    """An ``.npz`` of ``images`` (and optional ``angles``), priced by its headers first, as a dataset; else None."""
    if not body.startswith(ZIP_MAGIC):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            if "images.npy" not in archive.namelist():
                return None
    except (zipfile.BadZipFile, ValueError, OSError):
        return None  # parse_dataset says what is wrong with it
    _check_npz(body, max_entries)
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            return image_set(archive["images"], archive["angles"] if "angles" in archive.files else None)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InvalidParameterError("body", f"The image set could not be read ({str(exc)[:200]}).") from None


def _store_upload(service: Service, body: bytes, content_type: str, owner: str,
                  parsed: ParsedBody | None) -> tuple[DatasetOut, bool]:
    limit = service.settings.max_matrix_entries
    images = _image_npz(body, limit)  # rotated digits on stored images: an .npz of `images` (and `angles`)
    image_shape, angles_given = (None, False) if images is None else images[2:]
    X, y, source = parse_dataset(body, content_type, limit, parsed) if images is None else (*images[:2], "npz")
    if X.size > limit:
        raise LimitExceeded("X", f"X has {X.size} entries, more than this server takes.", limit=limit,
                            setting="CNNRELAX_MAX_MATRIX_ENTRIES")
    service.require_space(int(X.nbytes + y.nbytes))
    record, created = service.require_store().put_dataset(X, y, source, owner=owner, image_shape=image_shape,
                                                          angles_given=angles_given)
    return dataset_view(record), created


@router.post("", status_code=201, response_model=DatasetOut, openapi_extra={"requestBody": UPLOAD_BODY},
             responses={200: {"model": DatasetOut, "description": "The same content was stored before."}},
             summary="Upload a dataset")
async def upload_dataset(request: Request, response: Response, service: ServiceDep, tenant: TenantDep) -> DatasetOut:
    """Store X and y under the sha256 of their canonical content (201; 200 when this key stored it before)."""
    body = await read_body(request)
    content_type = request.headers.get("content-type", "")
    parsed = await service.parser.parse(body, "dataset") if body and is_json_upload(body, content_type) else None
    dataset, created = await run_in_threadpool(_store_upload, service, body, content_type, tenant.owner, parsed)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset


@router.get("", response_model=DatasetPage, summary="List datasets")
def list_datasets(service: ServiceDep, tenant: TenantDep) -> DatasetPage:
    store = service.require_store()
    return DatasetPage(items=[dataset_view(record) for record in store.list_datasets(owner=tenant.sees)])


@router.get("/{dataset_id:dataset_id}", response_model=DatasetOut, summary="Get a dataset's metadata")
def get_dataset(service: ServiceDep, tenant: TenantDep, dataset_id: str = DATASET_ID) -> DatasetOut:
    record = service.require_store().get_dataset(dataset_id, owner=tenant.sees)
    if record is None:
        raise ApiError(404, f"No dataset has the id {dataset_id}.", title="Not found")
    return dataset_view(record)


@router.delete("/{dataset_id:dataset_id}", status_code=204, response_class=Response, summary="Delete a dataset")
def delete_dataset(service: ServiceDep, tenant: TenantDep, dataset_id: str = DATASET_ID) -> Response:
    """Remove a dataset (409 while queued or running solves read it)."""
    try:
        deleted = service.require_store().delete_dataset(dataset_id, owner=tenant.sees)
    except DatasetInUse as exc:
        raise ApiError(409, f"The dataset is in use by {len(exc.job_ids)} queued or running job(s) "
                            f"({', '.join(exc.job_ids[:3])}); cancel them or wait.", title="Dataset in use") from None
    if not deleted:
        raise ApiError(404, f"No dataset has the id {dataset_id}.", title="Not found")
    return Response(status_code=204)
