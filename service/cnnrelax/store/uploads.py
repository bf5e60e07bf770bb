"""Uploads in parts (POST /v1/datasets/uploads; docs/uploads.md): their rows (tables ``uploads`` and
``upload_parts``), their bytes in ``<data_dir>/datasets/uploads/<upload_id>/``
(:class:`cnnrelax.dataset_files.UploadFiles`), and their completion into a dataset."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
import uuid

from ..dataset_files import UploadFiles, adopt_dataset_dir, dataset_stored, stored_size_bytes
from .datasets import DatasetsMixin
from .exceptions import UploadQuotaFull
from .records import UPLOAD_COLUMNS, UPLOAD_COMPLETED, UPLOAD_RECEIVING, DatasetRecord, UploadRecord, upload_record


class UploadsMixin(DatasetsMixin):
    """The store's uploads in parts (a completed upload becomes a dataset: hence built on :class:`DatasetsMixin`)."""

    def upload_files(self, upload: UploadRecord) -> UploadFiles:
        """The files of an upload."""
        return UploadFiles.under(self.dataset_dir, upload.id, upload.n, upload.d)

    @staticmethod
    def _uploads_held_bytes(db: sqlite3.Connection, owner: str) -> int:
        # UploadRecord.size_bytes, summed in SQL: n rows of (d + 1) float64
        return int(db.execute("SELECT coalesce(sum(n * (d + 1) * 8), 0) FROM uploads WHERE owner = ? AND status = ?",
                              (owner, UPLOAD_RECEIVING)).fetchone()[0])

    def uploads_held_bytes(self, owner: str) -> int:
        """Bytes of ``owner``'s uploads still receiving parts (their whole declared size)."""
        return self._uploads_held_bytes(self._connection(), owner)

    def create_upload(self, owner: str, n: int, d: int, part_rows: int, sha256: str | None, expires_at: float,
                      max_bytes_per_owner: int | None = None) -> UploadRecord:
        """A new upload of ``owner``, receiving; its files are made here (preallocated, fsynced) before its row.

        Past ``max_bytes_per_owner`` bytes in this owner's receiving uploads (this one included),
        :class:`UploadQuotaFull` and nothing is kept.
        """
        upload_id = uuid.uuid4().hex
        now = time.time()
        record = UploadRecord(upload_id, owner, n, d, part_rows, -(-n // part_rows), sha256, UPLOAD_RECEIVING, None,
                              now, now, expires_at)
        files = self.upload_files(record)
        try:
            files.create()
            with self._transaction() as db:
                if max_bytes_per_owner is not None:
                    held = self._uploads_held_bytes(db, owner)
                    if held + record.size_bytes > max_bytes_per_owner:
                        raise UploadQuotaFull(held, record.size_bytes, max_bytes_per_owner)
                db.execute(f"INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           tuple(record.__dict__.values()))
        except BaseException as exc:
            files.remove()
            if isinstance(exc, OSError):
                self.note_write_error(exc)
            raise
        return record

    def get_upload(self, upload_id: str, *, owner: str | None = None) -> UploadRecord | None:
        """The upload, if ``owner`` made it (``None``: whoever did)."""
        row = self._connection().execute(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?",
                                         (upload_id,)).fetchone()
        upload = None if row is None else upload_record(row)
        return None if upload is None or (owner is not None and upload.owner != owner) else upload

    def list_uploads(self, *, owner: str | None = None, limit: int = 1000) -> list[UploadRecord]:
        """Uploads, newest first: of ``owner`` (``None``: of everyone)."""
        where, params = ("", ()) if owner is None else ("WHERE owner = ?", (owner,))
        rows = self._connection().execute(f"SELECT {UPLOAD_COLUMNS} FROM uploads {where} "
                                          "ORDER BY created_at DESC LIMIT ?", (*params, limit)).fetchall()
        return [upload_record(row) for row in rows]

    def upload_part_digests(self, upload_id: str) -> dict[int, str]:
        """The parts of an upload received so far: index -> SHA-256 (hex) of the part's body."""
        return {int(index): str(digest) for index, digest in self._connection().execute(
            "SELECT idx, sha256 FROM upload_parts WHERE upload_id = ?", (upload_id,))}

    def upload_part_digest(self, upload_id: str, index: int) -> str | None:
        row = self._connection().execute("SELECT sha256 FROM upload_parts WHERE upload_id = ? AND idx = ?",
                                         (upload_id, index)).fetchone()
        return None if row is None else str(row[0])

    def record_upload_part(self, upload_id: str, index: int, sha256: str, size_bytes: int,
                           expires_at: float) -> tuple[bool, str | None]:
        """Record that part ``index`` arrived (its bytes are already durable) and push the upload's expiry back.

        Returns whether the upload still receives parts, and the digest recorded for that part before (``None``:
        recorded now).
        """
        now = time.time()
        with self._transaction() as db:
            touched = db.execute("UPDATE uploads SET updated_at = ?, expires_at = max(expires_at, ?) WHERE id = ? "
                                 "AND status = ?", (now, expires_at, upload_id, UPLOAD_RECEIVING)).rowcount
            if not touched:
                return False, None
            before = db.execute("SELECT sha256 FROM upload_parts WHERE upload_id = ? AND idx = ?",
                                (upload_id, index)).fetchone()
            if before is not None:
                return True, str(before[0])
            db.execute("INSERT INTO upload_parts (upload_id, idx, sha256, size_bytes, received_at) "
                       "VALUES (?, ?, ?, ?, ?)", (upload_id, index, sha256, size_bytes, now))
        return True, None

    def forget_upload_part(self, upload_id: str, index: int) -> None:
        """Drop the record of a part (its bytes were found unusable at completion: it is to be sent again)."""
        with self._transaction() as db:
            db.execute("DELETE FROM upload_parts WHERE upload_id = ? AND idx = ?", (upload_id, index))

    def verify_upload(self, upload_id: str, dataset_id: str) -> None:
        """Note an upload's verified content digest (the id its dataset will have), before its files move."""
        with self._transaction() as db:
            db.execute("UPDATE uploads SET dataset_id = ?, updated_at = ? WHERE id = ?",
                       (dataset_id, time.time(), upload_id))

    def complete_upload(self, upload: UploadRecord, record: DatasetRecord) -> tuple[DatasetRecord, bool]:
        """Make a verified upload's files the dataset ``record`` describes (unless stored before: the same content),
        grant it to the upload's owner and mark the upload completed; return the owner's record and whether their
        hold is new. Safe to run again after a crash at any point (the upload's ``dataset_id`` says where it went).
        """
        files = self.upload_files(upload)
        target = self.dataset_dir / record.id
        try:
            if files.exists():
                if not dataset_stored(self.dataset_dir, record.id):
                    adopt_dataset_dir(files.folder, target)
                files.remove()
        except OSError as exc:
            self.note_write_error(exc)
            raise
        if self.get_dataset(record.id) is None:
            size = stored_size_bytes(self.dataset_path(record.id))
            self._insert_dataset(dataclasses.replace(record, size_bytes=size))
        granted = self._grant_dataset(record.id, upload.owner, record.source)
        with self._transaction() as db:
            db.execute("UPDATE uploads SET status = ?, dataset_id = ?, updated_at = ? WHERE id = ?",
                       (UPLOAD_COMPLETED, record.id, time.time(), upload.id))
        return granted

    def delete_upload(self, upload_id: str, *, owner: str | None = None) -> bool:
        """Abort an upload of ``owner`` (``None``: anyone's): its rows and its files go. Whether there was one."""
        upload = self.get_upload(upload_id, owner=owner)
        if upload is None:
            return False
        with self._transaction() as db:
            db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        self.upload_files(upload).remove()
        return True

