"""Dataset arrays on disk, stored so that a worker reads them in chunks: two uncompressed ``.npy`` files a dataset.

A dataset ``<id>`` (its content address, :func:`dataset_digest`) lives in ``<data_dir>/datasets/<id>/`` as
``X.npy`` (``n x d``) and ``y.npy`` (``n``), both C-order little-endian float64 with numpy's plain ``.npy``
header: :func:`load_dataset_file` opens them with ``np.load(mmap_mode="r")``, so a solve on a stored dataset
maps the file and never copies ``X`` into the process's anonymous memory, and a Dask worker (or any reader)
can read any row range at ``header + row * d * 8``. A dataset is written whole to ``<id>.<uuid>.tmp/``, each
file fsynced, then the directory renamed into place (:func:`write_dataset_dir`), so a reader sees a whole
dataset or none.

Datasets stored before this layout are one zip-deflated ``<id>.npz``: they stay readable as they are (read
whole, as before; no migration is needed). :func:`dataset_array_paths` gives the ``X.npy`` / ``y.npy`` paths of
any dataset, writing the directory of an old ``.npz`` once on first use.

Uploads in parts (``/v1/datasets/uploads``) preallocate the same two files in
``<data_dir>/datasets/uploads/<upload_id>/`` (:class:`UploadFiles`): part ``i`` holds rows
``[i * part_rows, min(n, (i + 1) * part_rows))``, its body those rows of ``X`` (``rows * d`` float64) followed
by their labels (``rows`` float64), written at their offsets as they stream in (:class:`PartSink`) and fsynced
before the part is acknowledged. Completing the upload reads both files once in chunks
(:func:`scan_dataset`: the content digest, finiteness, the smallest label; plain reads into one buffer) and renames
the directory to the dataset's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

#: The two files of a dataset's directory.
X_FILE = "X.npy"
Y_FILE = "y.npy"
#: The folder (under the datasets folder) of the uploads in parts.
UPLOADS_FOLDER = "uploads"
#: Bytes of ``X`` read at a time by a pass over a stored dataset (the digest, the finiteness check).
SCAN_CHUNK_BYTES = 8 * 1024 * 1024
#: The on-disk type of every stored array.
STORED_DTYPE = np.dtype("<f8")
#: Suffix of a dataset directory (or file) being written; what a crash leaves of it is removed at start.
TEMPORARY_SUFFIX = ".tmp"


def row_bytes(d: int) -> int:
    """Bytes of one row of a dataset with its label: ``d + 1`` float64 (a part's body holds ``rows`` of them)."""
    return (d + 1) * STORED_DTYPE.itemsize


def is_dataset_id(text: str) -> bool:
    """A dataset id is 64 lower-case hex digits (a SHA-256)."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def dataset_digest(X: np.ndarray, y: np.ndarray, image_shape: tuple[int, int] | None = None,
                   chunk_rows: int | None = None) -> str:
    """The content address of a dataset: sha256 over the shapes and the float64 bytes of ``X`` and ``y`` (an image
    set's over its image shape too, so it never shares an address with a dataset of the same numbers).

    ``X`` is read ``chunk_rows`` rows at a time when given (a memory-mapped file: no copy of it is made; a float64
    C-order array is hashed in place in any case).
    """
    digest = hashlib.sha256()
    digest.update(f"cnnrelax-dataset-v1:{X.shape[0]}x{X.shape[1]}:".encode())
    if image_shape is not None:
        digest.update(f"images:{image_shape[0]}x{image_shape[1]}:".encode())
    for array in (X, y):
        rows = array.shape[0] if chunk_rows is None else chunk_rows
        for start in range(0, array.shape[0], max(rows, 1)):  # no copy of a float64 C-order block
            block = np.ascontiguousarray(array[start:start + rows], dtype=STORED_DTYPE)
            digest.update(block.data.cast("B"))
    return digest.hexdigest()


# -- where a dataset is -----------------------------------------------------------------------------
def dataset_dir_path(dataset_dir: Path, dataset_id: str) -> Path:
    """The directory of a dataset stored as two ``.npy`` files (it may not exist)."""
    if not is_dataset_id(dataset_id):
        raise KeyError(dataset_id)
    return dataset_dir / dataset_id


def dataset_location(dataset_dir: Path, dataset_id: str) -> Path:
    """Where a dataset is: its directory (``X.npy``, ``y.npy``), else its ``.npz`` from before that layout (the
    directory's path when neither exists)."""
    folder = dataset_dir_path(dataset_dir, dataset_id)
    legacy = dataset_dir / f"{dataset_id}.npz"
    if not folder.is_dir() and legacy.exists():
        return legacy
    return folder


def dataset_stored(dataset_dir: Path, dataset_id: str) -> bool:
    """Whether a dataset's arrays are on disk (in either layout)."""
    location = dataset_location(dataset_dir, dataset_id)
    return (location / X_FILE).exists() if location.suffix != ".npz" else location.exists()


def load_dataset_file(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``y`` of a stored dataset: memory-mapped, read-only, from its directory; read whole from an
    ``.npz`` stored before datasets were directories. ``FileNotFoundError`` when it is gone."""
    location = Path(path)
    if location.suffix == ".npz":
        with np.load(location, allow_pickle=False) as archive:
            return np.asarray(archive["X"]), np.asarray(archive["y"])
    X = np.load(location / X_FILE, mmap_mode="r", allow_pickle=False)
    y = np.load(location / Y_FILE, mmap_mode="r", allow_pickle=False)
    return X, y


@dataclass(frozen=True)
class DatasetArrayPaths:
    """The two ``.npy`` files of a stored dataset (:func:`dataset_array_paths`)."""

    X: Path
    y: Path


def dataset_array_paths(data_dir: Path | str, dataset_id: str) -> DatasetArrayPaths:
    """The ``X.npy`` and ``y.npy`` paths of dataset ``dataset_id`` in ``data_dir`` (the service's data directory).

    For chunked readers (a Dask worker on a volume it shares with the API): ``np.load(path, mmap_mode="r")``
    maps a file, ``np.lib.format`` gives its header's length for raw reads. A dataset stored before datasets were
    directories (one ``<id>.npz``) is written as a directory on the first call (atomically; the ``.npz`` stays
    until the dataset is deleted). ``FileNotFoundError`` when the dataset is not stored; ``KeyError`` when
    ``dataset_id`` is not a dataset id.
    """
    dataset_dir = Path(data_dir) / "datasets"
    location = dataset_location(dataset_dir, dataset_id)
    if location.suffix == ".npz":
        X, y = load_dataset_file(location)
        write_dataset_dir(dataset_dir, dataset_id, X, y)
        location = dataset_dir_path(dataset_dir, dataset_id)
    if not (location / X_FILE).exists():
        raise FileNotFoundError(f"No dataset {dataset_id} is stored in {dataset_dir}.")
    return DatasetArrayPaths(location / X_FILE, location / Y_FILE)


def stored_size_bytes(location: Path) -> int:
    """Bytes a stored dataset takes on disk (its two files, or its ``.npz``)."""
    if location.suffix == ".npz":
        return location.stat().st_size
    return sum((location / name).stat().st_size for name in (X_FILE, Y_FILE))


class _Collector(io.RawIOBase):
    """A write-only, non-seekable stream whose bytes are taken out as they come (zipfile then writes data
    descriptors, so an archive is made in one pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.pending += view
        self.position += len(view)
        return len(view)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out, self.pending = bytes(self.pending), bytearray()
        return out


def npz_chunks(location: Path, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The stored dataset at ``location`` as an ``.npz`` archive (``X`` and ``y``), ``chunk_bytes`` at a time: an
    ``.npz`` from before datasets were directories as its bytes; a directory as an uncompressed archive of its two
    files, made as it is sent (never whole in memory). The files are opened before the first chunk."""
    if location.suffix == ".npz":
        with open(location, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                yield chunk
        return
    handles = [open(location / X_FILE, "rb"), open(location / Y_FILE, "rb")]  # a DELETE now leaves them readable
    sink = _Collector()
    try:
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, handle in zip((X_FILE, Y_FILE), handles, strict=True):
                with archive.open(name, "w", force_zip64=True) as member:
                    while chunk := handle.read(chunk_bytes):
                        member.write(chunk)
                        yield sink.take()
        yield sink.take()
    finally:
        for handle in handles:
            handle.close()


# -- writing --------------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _npy_header(shape: tuple[int, ...]) -> dict[str, Any]:
    return {"descr": np.lib.format.dtype_to_descr(STORED_DTYPE), "fortran_order": False, "shape": shape}


def _save_synced(path: Path, array: np.ndarray) -> None:
    """``array`` as a ``.npy`` file, fsynced. Written by ``write(2)`` a block at a time (numpy's ``tofile`` loses the
    errno of a full disk, which the store needs to answer 507)."""
    data = np.ascontiguousarray(array, dtype=STORED_DTYPE)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, _npy_header(data.shape))
        flat = data.reshape(-1)
        step = SCAN_CHUNK_BYTES // STORED_DTYPE.itemsize
        for start in range(0, flat.shape[0], step):
            handle.write(flat[start:start + step].data)
        handle.flush()
        os.fsync(handle.fileno())


def write_dataset_dir(dataset_dir: Path, dataset_id: str, X: np.ndarray, y: np.ndarray) -> Path:
    """Write ``X`` and ``y`` as the dataset's directory (temporary name, fsync, rename); return the directory.

    A dataset already there is left as it is (same id, same content). A failed write (a full disk) leaves no
    temporary directory behind and raises the ``OSError``.
    """
    target = dataset_dir_path(dataset_dir, dataset_id)
    if (target / X_FILE).exists():
        return target
    temporary = dataset_dir / f"{dataset_id}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}"
    try:
        temporary.mkdir()
        _save_synced(temporary / X_FILE, X)
        _save_synced(temporary / Y_FILE, y)
        _fsync_dir(temporary)
        adopt_dataset_dir(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def adopt_dataset_dir(folder: Path, target: Path) -> None:
    """Rename a written dataset directory to its place (a directory already there wins: same content) and make
    the rename durable."""
    try:
        os.rename(folder, target)
    except OSError:
        if not (target / X_FILE).exists():
            raise
        return  # stored meanwhile by another writer: the caller removes its own copy
    _fsync_dir(target.parent)


def remove_dataset_files(dataset_dir: Path, dataset_id: str) -> None:
    """Delete a dataset's arrays, in either layout."""
    shutil.rmtree(dataset_dir_path(dataset_dir, dataset_id), ignore_errors=True)
    (dataset_dir / f"{dataset_id}.npz").unlink(missing_ok=True)


def remove_temporary(folder: Path) -> int:
    """Delete what writes cut short left in ``folder`` (``*.tmp`` files and directories); return how many."""
    removed = 0
    for path in folder.glob(f"*{TEMPORARY_SUFFIX}") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
    return removed


# -- one pass over a stored dataset ---------------------------------------------------------------
@dataclass(frozen=True)
class DatasetScan:
    """What one chunked pass over ``X`` and ``y`` finds (:func:`scan_dataset`)."""

    digest: str
    #: The first row holding NaN or an infinity in ``X`` (``None``: all finite); the same for ``y``.
    bad_x_row: int | None
    bad_y_row: int | None
    y_min: float
    y_min_index: int


def _npy_layout(path: Path) -> tuple[tuple[int, ...], int]:
    """The shape of a stored ``.npy`` file and where its data starts (the length of its header)."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(handle)
        if fortran or dtype != STORED_DTYPE:
            raise ValueError(f"{path} is not a C-order little-endian float64 array ({dtype}, fortran={fortran})")
        return tuple(int(v) for v in shape), handle.tell()


def _blocks(path: Path, chunk_bytes: int = SCAN_CHUNK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
    """A stored ``.npy`` file's rows, a block at a time: ``(first row, rows)``, read by ``read(2)`` into one buffer
    that is reused (each block is valid until the next; the page cache holds the file, not this process)."""
    shape, offset = _npy_layout(path)
    width = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    rows = max(1, chunk_bytes // (STORED_DTYPE.itemsize * width))
    buffer = bytearray(rows * width * STORED_DTYPE.itemsize)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        for start in range(0, shape[0], rows):
            count = min(rows, shape[0] - start)
            view = memoryview(buffer)[:count * width * STORED_DTYPE.itemsize]
            filled = 0
            while filled < len(view):
                got = handle.readinto(view[filled:])
                if not got:
                    raise EOFError(f"{path} ends before its {shape[0]} rows")
                filled += got
            block = np.frombuffer(buffer, dtype=STORED_DTYPE, count=count * width)
            yield start, block.reshape((count, *shape[1:]))


def scan_dataset(folder: Path) -> DatasetScan:
    """The content digest (as :func:`dataset_digest`), the first non-finite rows and the smallest label of the
    dataset stored in ``folder`` (``X.npy``, ``y.npy``), reading each file once, :data:`SCAN_CHUNK_BYTES` at a time
    (file reads into one buffer, not a memory map: the API process's resident memory stays one buffer)."""
    (n, d), _ = _npy_layout(folder / X_FILE)
    digest = hashlib.sha256(f"cnnrelax-dataset-v1:{n}x{d}:".encode())
    bad_x: int | None = None
    for start, block in _blocks(folder / X_FILE):
        digest.update(block.data.cast("B"))
        if bad_x is None:
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                bad_x = start + int(np.argmin(finite))
    bad_y: int | None = None
    y_min, y_min_index = float("inf"), 0
    for start, block in _blocks(folder / Y_FILE):
        digest.update(block.data.cast("B"))
        finite = np.isfinite(block)
        if bad_y is None and not finite.all():
            bad_y = start + int(np.argmin(finite))
        index = int(np.argmin(block))
        if float(block[index]) < y_min:
            y_min, y_min_index = float(block[index]), start + index
    return DatasetScan(digest.hexdigest(), bad_x, bad_y, y_min, y_min_index)


# -- uploads in parts -----------------------------------------------------------------------------
@dataclass(frozen=True)
class UploadFiles:
    """The two preallocated files of an upload in parts: ``folder/X.npy`` (``n x d``) and ``folder/y.npy``."""

    folder: Path
    n: int
    d: int

    @classmethod
    def under(cls, dataset_dir: Path, upload_id: str, n: int, d: int) -> "UploadFiles":
        return cls(dataset_dir / UPLOADS_FOLDER / upload_id, n, d)

    @property
    def x_path(self) -> Path:
        return self.folder / X_FILE

    @property
    def y_path(self) -> Path:
        return self.folder / Y_FILE

    def create(self) -> None:
        """Write both headers and size both files to their whole length (sparse: no data block is written), then
        fsync them and the folders, so that the upload survives a crash from its first part on."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for path, shape in ((self.x_path, (self.n, self.d)), (self.y_path, (self.n,))):
            with open(path, "wb") as handle:
                np.lib.format.write_array_header_1_0(handle, _npy_header(shape))  # padded to 64 bytes, as np.save
                handle.truncate(handle.tell() + int(np.prod(shape, dtype=np.int64)) * STORED_DTYPE.itemsize)
                handle.flush()
                os.fsync(handle.fileno())
        _fsync_dir(self.folder)
        _fsync_dir(self.folder.parent)

    def exists(self) -> bool:
        return self.x_path.exists() and self.y_path.exists()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def sink(self, first_row: int, rows: int) -> "PartSink":
        """A writer of the part holding ``rows`` rows from ``first_row``."""
        return PartSink(self, first_row, rows)


class PartTooLarge(Exception):
    """A part's body passed its size while it streamed in (``expected`` bytes)."""

    def __init__(self, expected: int) -> None:
        super().__init__(expected)
        self.expected = expected


class PartSink:
    """Writes one part's body as it streams in: its first ``rows * d * 8`` bytes into ``X.npy`` at the part's rows,
    the next ``rows * 8`` into ``y.npy``; hashes every byte (SHA-256); refuses a byte past the part's size.

    With ``write=False`` it only hashes and counts (a part sent again: compared, never rewritten).
    """

    def __init__(self, files: UploadFiles, first_row: int, rows: int, write: bool = True) -> None:
        self.files = files
        self.x_bytes = rows * files.d * STORED_DTYPE.itemsize
        self.expected = rows * row_bytes(files.d)
        self.received = 0
        self.hash = hashlib.sha256()
        self._descriptors: tuple[int, int] | None = None
        self._x_at = self._y_at = 0
        if write:
            self._x_at = _npy_layout(files.x_path)[1] + first_row * files.d * STORED_DTYPE.itemsize
            self._y_at = _npy_layout(files.y_path)[1] + first_row * STORED_DTYPE.itemsize
            self._descriptors = (os.open(files.x_path, os.O_WRONLY), os.open(files.y_path, os.O_WRONLY))

    def write(self, chunk: bytes) -> None:
        """Take the next bytes of the body (``PartTooLarge`` when they pass its size: nothing of them is kept)."""
        if self.received + len(chunk) > self.expected:
            raise PartTooLarge(self.expected)
        self.hash.update(chunk)
        if self._descriptors is not None:
            view = memoryview(chunk)
            split = max(0, min(len(chunk), self.x_bytes - self.received))
            if split:
                self._pwrite(self._descriptors[0], view[:split], self._x_at + self.received)
            if split < len(chunk):
                self._pwrite(self._descriptors[1], view[split:], self._y_at + self.received + split - self.x_bytes)
        self.received += len(chunk)

    @staticmethod
    def _pwrite(descriptor: int, data: memoryview, offset: int) -> None:
        while data:
            written = os.pwrite(descriptor, data, offset)
            data, offset = data[written:], offset + written

    def finish(self) -> str:
        """Make the written bytes durable (fsync) and return the body's SHA-256 (hex)."""
        if self._descriptors is not None:
            for descriptor in self._descriptors:
                os.fsync(descriptor)
        return self.hash.hexdigest()

    def close(self) -> None:
        if self._descriptors is not None:
            for descriptor in self._descriptors:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
            self._descriptors = None

    def __enter__(self) -> "PartSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
