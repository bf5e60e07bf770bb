"""The store's one face: :class:`Store`, every concern's mixin over one data directory's database."""

from __future__ import annotations

from .datasets import DatasetsMixin
from .events import EventsMixin
from .jobs import JobsMixin
from .retention import RetentionMixin
from .uploads import UploadsMixin


class Store(JobsMixin, EventsMixin, RetentionMixin, UploadsMixin, DatasetsMixin):
    """Jobs and datasets of one data directory. Thread-safe: one SQLite connection per thread.

    Its methods come from one mixin a concern (:mod:`.jobs`, :mod:`.events`, :mod:`.datasets`, :mod:`.uploads`,
    :mod:`.retention`), all over :class:`~cnnrelax.store.base.StoreBase` (connections, transactions, faults).
    """
