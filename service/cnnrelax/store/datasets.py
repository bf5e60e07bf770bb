"""Datasets' rows and holds: content-addressed (the id is the sha256 of the canonical float64 ``X`` and ``y``),
their arrays in ``<data_dir>/datasets/<id>/`` (:mod:`cnnrelax.dataset_files`), each tenant's hold on one
(``dataset_owners``); a dataset's files go with its last holder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..dataset_files import (
    dataset_digest,
    dataset_location,
    dataset_stored,
    load_dataset_file,
    remove_dataset_files,
    stored_size_bytes,
    write_dataset_dir,
)
from .base import StoreBase
from .exceptions import DatasetInUse
from .records import ANONYMOUS, DATASET_COLUMNS, OWNED_DATASET_COLUMNS, DatasetRecord, dataset_record


class DatasetsMixin(StoreBase):
    """The store's datasets."""

    def dataset_path(self, dataset_id: str) -> Path:
        """Where a dataset's arrays are: its directory of ``X.npy`` and ``y.npy``, or its ``.npz`` from before that
        layout (:func:`cnnrelax.dataset_files.load_dataset_file` reads either). ``KeyError`` for a malformed id."""
        return dataset_location(self.dataset_dir, dataset_id)

    def put_dataset(self, X: np.ndarray, y: np.ndarray, source: str, owner: str = ANONYMOUS, *,
                    image_shape: tuple[int, int] | None = None,
                    angles_given: bool = False) -> tuple[DatasetRecord, bool]:
        """Store ``X`` and ``y`` under their content address for ``owner``; return the record and whether it is new.

        An image set (``image_shape``) is stored the same way, one flattened image a row (see
        :attr:`DatasetRecord.image_shape`).

        The arrays are written as the dataset's directory of two uncompressed ``.npy`` files (a temporary name,
        fsync, rename: :func:`cnnrelax.dataset_files.write_dataset_dir`); a failed write (a full disk) leaves no
        temporary file behind and raises the ``OSError``.
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        dataset_id = dataset_digest(X, y, image_shape)
        existing = self.get_dataset(dataset_id)
        if existing is None or not dataset_stored(self.dataset_dir, dataset_id):
            try:
                write_dataset_dir(self.dataset_dir, dataset_id, X, y)
            except OSError as exc:
                self.note_write_error(exc)
                raise
            y_index = int(np.argmin(y)) if y.size else None
            self._insert_dataset(DatasetRecord(
                dataset_id, int(X.shape[0]), int(X.shape[1]), stored_size_bytes(self.dataset_path(dataset_id)),
                source, time.time(), None if y_index is None else float(y[y_index]), y_index, image_shape,
                angles_given))
        return self._grant_dataset(dataset_id, owner, source)

    def _insert_dataset(self, record: DatasetRecord) -> None:
        image_shape = record.image_shape
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO datasets (id, n, d, size_bytes, source, created_at, y_min, "
                       "y_min_index, image_shape, angles_given) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (record.id, record.n, record.d, record.size_bytes, record.source, record.created_at,
                        record.y_min, record.y_min_index,
                        None if image_shape is None else f"{image_shape[0]}x{image_shape[1]}",
                        int(record.angles_given)))

    def _grant_dataset(self, dataset_id: str, owner: str, source: str) -> tuple[DatasetRecord, bool]:
        """``owner``'s hold on a stored dataset (made, or its last use refreshed); the record and whether it is new."""
        now = time.time()
        with self._transaction() as db:
            created = db.execute("INSERT OR IGNORE INTO dataset_owners (dataset_id, owner, created_at, last_used_at, "
                                 "source) VALUES (?, ?, ?, ?, ?)", (dataset_id, owner, now, now, source)).rowcount == 1
            if not created:
                db.execute("UPDATE dataset_owners SET last_used_at = ? WHERE dataset_id = ? AND owner = ?",
                           (now, dataset_id, owner))
        record = self.get_dataset(dataset_id, owner=owner)
        assert record is not None
        return record, created

    def get_dataset(self, dataset_id: str, *, owner: str | None = None) -> DatasetRecord | None:
        """The dataset's metadata, if ``owner`` holds it (``None``: whoever holds it)."""
        if owner is None:
            row = self._connection().execute(f"SELECT {DATASET_COLUMNS} FROM datasets "
                                             "WHERE id = ?", (dataset_id,)).fetchone()
        else:
            row = self._connection().execute(
                f"SELECT {OWNED_DATASET_COLUMNS} FROM datasets AS d "
                "JOIN dataset_owners AS o ON o.dataset_id = d.id WHERE d.id = ? AND o.owner = ?",
                (dataset_id, owner)).fetchone()
        return None if row is None else dataset_record(row)

    def list_datasets(self, limit: int = 1000, *, owner: str | None = None) -> list[DatasetRecord]:
        if owner is None:
            rows = self._connection().execute(f"SELECT {DATASET_COLUMNS} FROM datasets "
                                              "ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._connection().execute(
                f"SELECT {OWNED_DATASET_COLUMNS} FROM datasets AS d "
                "JOIN dataset_owners AS o ON o.dataset_id = d.id WHERE o.owner = ? "
                "ORDER BY o.created_at DESC LIMIT ?", (owner, limit)).fetchall()
        return [dataset_record(row) for row in rows]

    def load_dataset(self, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
        return load_dataset_file(self.dataset_path(dataset_id))

    def delete_dataset(self, dataset_id: str, *, owner: str | None = None) -> bool:
        """Remove ``owner``'s hold on a dataset (``None``: everyone's); the file goes with the last holder.

        :class:`DatasetInUse` while queued or running jobs of that owner (any owner, for ``None``) need it.
        """
        owner_clause, params = ("", ()) if owner is None else (" AND owner = ?", (owner,))
        with self._transaction() as db:
            active = [row[0] for row in db.execute(
                "SELECT id FROM jobs WHERE dataset_id = ? AND status IN ('queued', 'running')"
                f"{owner_clause} LIMIT 10", (dataset_id, *params))]
            if active:
                raise DatasetInUse(active)
            deleted = db.execute(f"DELETE FROM dataset_owners WHERE dataset_id = ?{owner_clause}",
                                 (dataset_id, *params)).rowcount >= 1
            remaining = db.execute("SELECT count(*) FROM dataset_owners WHERE dataset_id = ?",
                                   (dataset_id,)).fetchone()[0]
            busy = db.execute("SELECT count(*) FROM jobs WHERE dataset_id = ? AND status IN ('queued', 'running')",
                              (dataset_id,)).fetchone()[0]
            gone = remaining == 0 and busy == 0
            if gone:
                db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))
        if gone:
            remove_dataset_files(self.dataset_dir, dataset_id)
        return deleted

    def release_inline_dataset(self, dataset_id: str, owner: str) -> bool:
        """Drop ``owner``'s hold on a dataset made from a solve's inline ``data`` once no job of theirs names it.

        Only a dataset whose record says ``inline`` is released (an upload is the owner's to delete); the file
        goes with its last holder (:meth:`delete_dataset`). Return whether the hold was dropped.
        """
        db = self._connection()
        record = self.get_dataset(dataset_id, owner=owner)
        if record is None or record.source != "inline":
            return False
        if db.execute("SELECT 1 FROM jobs WHERE dataset_id = ? AND owner = ? LIMIT 1",
                      (dataset_id, owner)).fetchone() is not None:
            return False
        try:
            return self.delete_dataset(dataset_id, owner=owner)
        except DatasetInUse:
            return False
