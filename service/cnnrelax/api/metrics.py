"""Prometheus metrics of one service: jobs by state, queue depth, run durations (a registry per app).

An admin key (or any caller when keys are off) reads the app's registry: every tenant's jobs, the run-time
histograms, the counters. Any other key reads its own jobs only (:meth:`ServiceMetrics.tenant_exposition`):
jobs by kind and state, its queue depth and its jobs in flight, from the store; nothing of other tenants.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..store import Store
from ..types import JobKind, JobStatus

RUN_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class _StoreCollector(Collector):  # type: ignore[misc]  # prometheus_client enters untyped (Any)
    """Job counts by kind and state, and the queue depth, read from the store at scrape time.

    ``owner``: that tenant's jobs only, its jobs in flight being its ``running`` jobs (``None``: every tenant's,
    with ``running`` saying how many this server runs).
    """

    def __init__(self, store: Store, running: Callable[[], int] | None, owner: str | None = None) -> None:
        self.store = store
        self.running = running
        self.owner = owner

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.store.count_by_status(owner=self.owner)
        jobs = GaugeMetricFamily("cnnrelax_jobs", "Jobs in the store by kind and state.", labels=["kind", "state"])
        for kind in JobKind:
            for status in JobStatus:
                jobs.add_metric([kind.value, status.value], counts.get((kind.value, status.value), 0))
        yield jobs
        depth = GaugeMetricFamily("cnnrelax_queue_depth", "Jobs waiting for a worker.")
        depth.add_metric([], sum(v for (_, status), v in counts.items() if status == JobStatus.queued))
        yield depth
        running = GaugeMetricFamily("cnnrelax_jobs_in_flight", "Jobs this server's workers are running now.")
        in_flight = self.running() if self.running is not None else sum(
            v for (_, status), v in counts.items() if status == JobStatus.running)
        running.add_metric([], in_flight)
        yield running


class ServiceMetrics:
    """The registry of one app and the instruments the service updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.run_seconds = Histogram("cnnrelax_job_run_seconds", "Run time of finished jobs (solve durations).",
                                     labelnames=["kind", "status"], buckets=RUN_SECONDS_BUCKETS,
                                     registry=self.registry)
        self.finished = Counter("cnnrelax_jobs_finished", "Jobs finished by this server, by final state.",
                                labelnames=["kind", "status"], registry=self.registry)
        self.rejected = Counter("cnnrelax_submissions_rejected", "Submissions refused because the queue was full.",
                                registry=self.registry)

    def watch_store(self, store: Store, running: Callable[[], int]) -> None:
        self.registry.register(_StoreCollector(store, running))

    def exposition(self) -> bytes:
        """The app's registry in Prometheus's text format: every tenant's figures (admin keys, keys off)."""
        return bytes(generate_latest(self.registry))

    @staticmethod
    def tenant_exposition(store: Store, owner: str) -> bytes:
        """One tenant's figures in Prometheus's text format: its jobs by kind and state, queued and in flight."""
        registry = CollectorRegistry()
        registry.register(_StoreCollector(store, None, owner=owner))
        return bytes(generate_latest(registry))

    def job_finished(self, kind: str, status: str, run_time_s: float) -> None:
        self.run_seconds.labels(kind, status).observe(run_time_s)
        self.finished.labels(kind, status).inc()
