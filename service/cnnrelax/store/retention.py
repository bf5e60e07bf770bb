"""Retention: finished jobs and unused datasets past their time to live, uploads in parts past their expiry."""

from __future__ import annotations

import contextlib
import shutil

from ..dataset_files import remove_dataset_files
from .records import UPLOAD_COLUMNS, upload_record
from .uploads import UploadsMixin


class RetentionMixin(UploadsMixin):
    """The store's purge."""

    def purge(self, *, jobs_before: float, datasets_before: float) -> tuple[list[str], list[str]]:
        """Delete jobs that ended before ``jobs_before`` (with their results and requests), then datasets
        whose every holder last uploaded or used them before ``datasets_before`` and that no queued or running
        job needs. Return the ids of the jobs and of the datasets deleted (figures are the caller's).
        """
        with self._transaction() as db:
            jobs = [row[0] for row in db.execute(
                "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? "
                "AND status IN ('succeeded', 'failed', 'cancelled') RETURNING id", (jobs_before,))]
            db.execute("DELETE FROM dataset_owners WHERE last_used_at < ? AND dataset_id NOT IN "
                       "(SELECT dataset_id FROM jobs WHERE dataset_id IS NOT NULL "
                       "AND status IN ('queued', 'running'))", (datasets_before,))
            datasets = [row[0] for row in db.execute(
                "DELETE FROM datasets WHERE id NOT IN (SELECT dataset_id FROM dataset_owners) AND id NOT IN "
                "(SELECT dataset_id FROM jobs WHERE dataset_id IS NOT NULL AND status IN ('queued', 'running')) "
                "RETURNING id")]
        for dataset_id in datasets:
            with contextlib.suppress(OSError, KeyError):
                remove_dataset_files(self.dataset_dir, dataset_id)
        return jobs, datasets

    def purge_uploads(self, now: float) -> list[str]:
        """Delete uploads whose expiry passed (receiving ones with their files; completed ones' rows), and upload
        folders no row names (a crash between a folder and its row); return the ids of the uploads deleted."""
        with self._transaction() as db:
            gone = [upload_record(row) for row in db.execute(
                f"DELETE FROM uploads WHERE expires_at < ? RETURNING {UPLOAD_COLUMNS}", (now,))]
        for upload in gone:
            self.upload_files(upload).remove()
        folder = self.dataset_dir / "uploads"
        known = {row[0] for row in self._connection().execute("SELECT id FROM uploads")}
        for path in folder.iterdir() if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                if path.name not in known and path.stat().st_mtime < now - 3600:
                    shutil.rmtree(path, ignore_errors=True)
        return [upload.id for upload in gone]
