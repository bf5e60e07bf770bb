"""Retention: finished jobs and unused datasets past their time to live, uploads in parts past their expiry, and
files no row names (the orphan sweep).

Files are written before the row that names them, so that a row never names missing files: a dataset's directory
before its ``datasets`` row (:meth:`~.datasets.DatasetsMixin.put_dataset`; a completed upload's folder is moved to
``datasets/<id>/`` before the row, :meth:`~.uploads.UploadsMixin.complete_upload`), an upload's folder before its
``uploads`` row, and an upload's row is deleted before its folder. A crash between the two leaves files that no
row names and that nothing else would ever remove. The purge removes them once they are older than
:data:`ORPHAN_GRACE_S` (since they were last made, written or moved: the newest of their mtime and ctime; a rename
sets the ctime), so a write in flight is never removed. A dataset directory an upload's row names (its verified
``dataset_id``, noted before the move) is kept while that row lives: completing the upload again finishes it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from ..dataset_files import UPLOADS_FOLDER, is_dataset_id, remove_dataset_files
from .base import log
from .records import UPLOAD_COLUMNS, upload_record
from .uploads import UploadsMixin

#: How long (seconds) files that no row names are kept since they were last made, written or moved, before the purge
#: removes them: longer than any write between files and their row takes.
ORPHAN_GRACE_S = 3600.0


def _changed_at(path: Path) -> float:
    """When ``path`` was last made, written or moved (a rename changes its ctime, not its mtime)."""
    status = path.stat()
    return max(status.st_mtime, status.st_ctime)


class RetentionMixin(UploadsMixin):
    """The store's purge."""

    def purge(self, *, jobs_before: float, datasets_before: float,
              now: float | None = None) -> tuple[list[str], list[str]]:
        """Delete jobs that ended before ``jobs_before`` (with their results and requests), then datasets
        whose every holder last uploaded or used them before ``datasets_before`` and that no queued or running
        job needs, then the files no row names (:meth:`sweep_orphans`, at ``now``: default the clock's). Return
        the ids of the jobs and of the datasets deleted (figures are the caller's).
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
        self.sweep_orphans(time.time() if now is None else now)
        return jobs, datasets

    def purge_uploads(self, now: float) -> list[str]:
        """Delete uploads whose expiry passed (receiving ones with their files; completed ones' rows); return the ids
        of the uploads deleted. (Upload folders no row names go in :meth:`sweep_orphans`.)"""
        with self._transaction() as db:
            gone = [upload_record(row) for row in db.execute(
                f"DELETE FROM uploads WHERE expires_at < ? RETURNING {UPLOAD_COLUMNS}", (now,))]
        for upload in gone:
            self.upload_files(upload).remove()
        return [upload.id for upload in gone]

    def sweep_orphans(self, now: float, grace_s: float = ORPHAN_GRACE_S) -> list[Path]:
        """Remove dataset directories (and ``.npz`` files) and upload folders that no row names and that were last
        made, written or moved more than ``grace_s`` before ``now``; return their paths."""
        db = self._connection()  # rows first: files made after this read are younger than the grace
        datasets = {row[0] for row in db.execute(
            "SELECT id FROM datasets UNION SELECT dataset_id FROM uploads WHERE dataset_id IS NOT NULL")}
        uploads = {row[0] for row in db.execute("SELECT id FROM uploads")}
        folder = self.dataset_dir / UPLOADS_FOLDER
        candidates = [path for path in (self.dataset_dir.iterdir() if self.dataset_dir.is_dir() else ())
                      if (path.is_dir() and is_dataset_id(path.name) and path.name not in datasets)
                      or (path.suffix == ".npz" and is_dataset_id(path.stem) and path.stem not in datasets)]
        candidates += [path for path in (folder.iterdir() if folder.is_dir() else ()) if path.name not in uploads]
        removed: list[Path] = []
        for path in candidates:
            with contextlib.suppress(OSError):
                if _changed_at(path) < now - grace_s:
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    removed.append(path)
        if removed:
            log.warning("removed %d dataset or upload files no row names (a crash between them and their row)",
                        len(removed), extra={"paths": [str(path) for path in removed]})
        return removed
