"""What the store refuses: a data directory another process holds, a full queue, a reused Idempotency-Key, a
dataset that jobs still read, an owner's uploads past their quota."""

from __future__ import annotations


class StoreInUse(RuntimeError):
    """Another process holds the data directory's database (a second server on the same data dir)."""


class QueueFull(Exception):
    """The queue already holds ``max_queue_depth`` jobs (``per_owner``: this owner's ``max_queued_per_owner``)."""

    def __init__(self, depth: int, per_owner: bool = False) -> None:
        super().__init__(f"The queue is full ({depth} jobs waiting).")
        self.depth = depth
        self.per_owner = per_owner


class QueuedWorkFull(Exception):
    """An owner's queued jobs already hold ``queued_cpu_s`` estimated CPU-seconds; another ``needed`` would pass
    ``limit``."""

    def __init__(self, queued_cpu_s: float, needed: float, limit: float) -> None:
        super().__init__(f"{queued_cpu_s:.0f} s of work queued; {needed:.0f} s more passes {limit:.0f} s.")
        self.queued_cpu_s = queued_cpu_s
        self.needed = needed
        self.limit = limit


class IdempotencyConflict(Exception):
    """An Idempotency-Key was used before with another request body."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class DatasetInUse(Exception):
    """A dataset cannot be deleted while queued or running jobs read it."""

    def __init__(self, job_ids: list[str]) -> None:
        super().__init__(", ".join(job_ids))
        self.job_ids = job_ids


class UploadQuotaFull(Exception):
    """An owner's incomplete uploads already hold ``held`` bytes; another ``needed`` would pass ``limit``."""

    def __init__(self, held: int, needed: int, limit: int) -> None:
        super().__init__(f"{held} bytes of uploads held; {needed} more pass {limit}.")
        self.held, self.needed, self.limit = held, needed, limit
