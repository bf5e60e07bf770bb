"""Service settings, read from the environment (prefix ``CNNRELAX_``) with embedded defaults.

``CNNRELAX_DATA_DIR``, ``CNNRELAX_HOST``, ``CNNRELAX_PORT``, ``CNNRELAX_WORKERS``, ``CNNRELAX_MAX_BODY_BYTES``,
``CNNRELAX_MAX_MATRIX_ENTRIES``, ``CNNRELAX_MAX_TRIALS``, ``CNNRELAX_MAX_QUEUE_DEPTH``,
``CNNRELAX_JOB_TIME_LIMIT_S``, ``CNNRELAX_API_KEYS`` (comma-separated; empty turns authentication off),
``CNNRELAX_DASK_SCHEDULER`` (unset: local worker processes), ``CNNRELAX_LOG_LEVEL``.

Request pricing (every request is priced from its shapes before it is accepted):
``CNNRELAX_MAX_PATCH_ENTRIES`` (n*k*m of the patch tensor), ``CNNRELAX_MAX_INLINE_NUMBERS`` (numbers in one
JSON body), ``CNNRELAX_MAX_CONSTRAINT_NUMBERS``, ``CNNRELAX_MAX_EXPERIMENT_NUMBERS`` (numbers in an
experiment's body, e.g. inline images),
Work is priced in estimated CPU-seconds (:mod:`cnnrelax.pricing`): a job estimated past
``CNNRELAX_JOB_TIME_LIMIT_S`` is refused; ``CNNRELAX_MAX_QUEUED_CPU_S_PER_KEY`` caps a tenant's queued estimates.
Tenants: ``CNNRELAX_ADMIN_API_KEYS``, ``CNNRELAX_MAX_QUEUED_PER_KEY``. Retention: ``CNNRELAX_JOB_RETENTION_S``,
``CNNRELAX_DATASET_RETENTION_S``, ``CNNRELAX_PURGE_INTERVAL_S``. Disk: ``CNNRELAX_MIN_FREE_BYTES``,
``CNNRELAX_STORE_WRITE_RETRY_S``. Uploads in parts: ``CNNRELAX_UPLOAD_EXPIRY_S``, ``CNNRELAX_MAX_UPLOAD_BYTES_PER_KEY``.
Workers and Dask: ``CNNRELAX_WORKER_MEMORY_LIMIT_MB`` (0: none), ``CNNRELAX_DASK_TLS_CA_FILE``,
``CNNRELAX_DASK_TLS_CERT``, ``CNNRELAX_DASK_TLS_KEY`` (TLS to the Dask scheduler).
Browsers: ``CNNRELAX_CORS_ORIGINS`` (CORS, off when empty), ``CNNRELAX_CONSOLE_SESSION_S``.
HTTP edge: ``CNNRELAX_MAX_HEADER_BYTES``, ``CNNRELAX_MAX_HEADER_LINE_BYTES``, ``CNNRELAX_MAX_HEADER_LINES``,
``CNNRELAX_HEADER_TIMEOUT_S``, ``CNNRELAX_BODY_TIMEOUT_S``, ``CNNRELAX_BODY_MIN_RATE_BYTES_S``,
``CNNRELAX_KEEPALIVE_TIMEOUT_S``, ``CNNRELAX_MAX_CONNECTIONS``, ``CNNRELAX_MAX_REQUESTS_IN_FLIGHT``,
``CNNRELAX_MAX_BODY_MEMORY_BYTES`` (see docs/exposing.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_data_dir() -> Path:
    """A per-user data directory: ``$XDG_DATA_HOME/cnnrelax`` or ``~/.local/share/cnnrelax``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cnnrelax"


class Settings(BaseSettings):
    """Every knob of the service; each field is also the environment variable ``CNNRELAX_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CNNRELAX_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Directory of the SQLite store, the datasets and the figures.")
    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port.")
    workers: int = Field(default=2, ge=1, le=256, description="Local solver processes.")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024,
                                description="Largest request body accepted (413 past it).")
    max_matrix_entries: int = Field(default=20_000_000, ge=1, description="Largest n*d of a problem (422 past it).")
    max_trials: int = Field(default=1000, ge=1, description="Largest number of trials of one solve (422 past it).")
    max_queue_depth: int = Field(default=1000, ge=1, description="Queued jobs past which submissions get 429.")
    job_time_limit_s: float = Field(default=3600.0, gt=0, description="Longest run of one job; it then ends failed.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Accepted X-API-Key values, comma-separated; empty: no authentication.")
    dask_scheduler: str | None = Field(default=None, description="Dask scheduler address; unset: local processes.")
    log_level: str = Field(default="info", description="Logging level (debug, info, warning, error).")
    # -- request pricing (issue 11) -----------------------------------------------------------------
    max_patch_entries: int = Field(default=20_000_000, ge=1,
                                   description="Largest patch tensor n*k*m of a solve (422 past it).")
    max_inline_numbers: int = Field(default=4_000_000, ge=1,
                                    description="Most numbers in one JSON body (inline data, JSON datasets); 422 "
                                                "past it: upload a .npz dataset instead.")
    max_constraint_numbers: int = Field(default=250_000, ge=1,
                                        description="Most numbers in a solve's constraints and output_weights "
                                                    "(they stay in the stored request); 422 past it.")
    max_experiment_numbers: int = Field(default=500_000, ge=1,
                                        description="Most numbers in an experiment's JSON body (inline images); "
                                                    "the spec is kept and answered whole, so it is kept small.")
    # -- certificates of given filters (POST /v1/certificates) ---------------------------------------
    certify_inline_entries: int = Field(default=500_000, ge=0,
                                        description="Problems of at most this many patch entries (n*k*m, scaled "
                                                    "by trials + coverage_samples over the defaults' 72) are "
                                                    "certified at once (200); larger ones are queued as a job (202).")
    # -- tenants ------------------------------------------------------------------------------------
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="X-API-Key values that may see and cancel every tenant's jobs and data.")
    max_queued_per_key: int = Field(default=200, ge=1,
                                    description="Queued jobs of one API key past which its submissions get 429.")
    # -- pricing (cnnrelax.pricing) -----------------------------------------------------------------
    max_queued_cpu_s_per_key: float = Field(
        default=21600.0, gt=0, description="Most estimated CPU-seconds one tenant's queued jobs may hold together "
                                           "(429 with Retry-After past it); six job time limits by default.")
    # -- retention ----------------------------------------------------------------------------------
    job_retention_s: float = Field(default=7 * 86400.0, gt=0,
                                   description="Finished jobs (results, inline data, figures) are deleted this "
                                               "long after they ended.")
    dataset_retention_s: float = Field(default=7 * 86400.0, gt=0,
                                       description="Datasets no queued or running job needs are deleted this long "
                                                   "after their last upload or use.")
    purge_interval_s: float = Field(default=600.0, gt=0, description="How often the background purge runs.")
    # -- disk ---------------------------------------------------------------------------------------
    min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0,
                                description="Free space of the data dir below which /readyz answers 503 and writes "
                                            "answer 507.")
    # -- faults (issue 16) ---------------------------------------------------------------------------
    store_write_retry_s: float = Field(
        default=30.0, gt=0, description="How long the end of a job is retried while the store refuses writes (a full "
                                        "disk, a read-only file) before its result gives way to a short 'failed' "
                                        "record saying why (still retried until the store takes one).")
    worker_memory_limit_mb: int = Field(
        default=4096, ge=0, description="Memory limit of each local worker process in MiB (a job past it fails); "
                                        "0: no limit.")
    events_ping_s: float = Field(default=15.0, gt=0, le=3600,
                                 description="Seconds between heartbeats (SSE comments) on an idle event stream.")
    dask_tls_ca_file: Path | None = Field(
        default=None, description="CA certificate (PEM) that signed the Dask scheduler's certificate; with the two "
                                  "below, the API talks to the scheduler over TLS (a tls:// address).")
    dask_tls_cert: Path | None = Field(default=None, description="The API's client certificate (PEM) for Dask TLS.")
    dask_tls_key: Path | None = Field(default=None, description="The private key (PEM) of dask_tls_cert.")
    dask_shared_data_dir: Path | None = Field(
        default=None, description="The data directory as the Dask workers see it (a volume they share with the API); "
                                  "set: a solve on a stored dataset runs with X read by the workers in chunks and "
                                  "spread over them, instead of travelling in the job's ticket.")
    # -- browsers (the API's face, the console) -----------------------------------------------------
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins (e.g. https://app.example.org, or *) whose pages may call the "
                                          "API (CORS), comma-separated; empty: CORS off.")
    console_session_s: float = Field(default=8 * 3600.0, gt=0,
                                     description="How long a console login lasts without use (seconds).")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    # -- the HTTP edge (issue 16): the process holds on its own, without a proxy in front -----------
    max_header_bytes: int = Field(default=32 * 1024, ge=1024,
                                  description="Largest request line plus headers of one request (431 past it).")
    max_header_line_bytes: int = Field(default=8 * 1024, ge=256,
                                       description="Longest single header line, name and value (431 past it).")
    max_header_lines: int = Field(default=100, ge=8, description="Most header lines in one request (431 past it).")
    header_timeout_s: float = Field(default=10.0, gt=0,
                                    description="Longest time from a connection's first byte (or its opening) to "
                                                "the end of a request's headers; the connection is then closed.")
    body_timeout_s: float = Field(default=10.0, gt=0,
                                  description="Longest pause between the bytes of a request body; also the grace "
                                              "before body_min_rate_bytes_s applies. The connection is then "
                                              "closed.")
    body_min_rate_bytes_s: float = Field(default=1024.0, ge=0,
                                         description="Slowest average body rate kept after body_timeout_s (bytes/s; "
                                                     "0: none); a slower client is disconnected.")
    keepalive_timeout_s: float = Field(default=5.0, gt=0,
                                       description="How long an idle keep-alive connection is kept between requests.")
    max_connections: int = Field(default=1000, ge=8,
                                 description="Open connections past which idle ones are closed to make room, and "
                                             "new ones get 503 (except /healthz and /readyz) when none is idle.")
    max_requests_in_flight: int = Field(default=256, ge=1,
                                        description="Requests served at once past which others get 503 with "
                                                    "Retry-After (/healthz and /readyz are always answered).")
    max_body_memory_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024,
                                       description="Memory for request bodies being read and decoded at once, all "
                                                   "requests together (each is charged a multiple of its length); "
                                                   "503 with Retry-After past it.")

    # -- uploads in parts (POST /v1/datasets/uploads; docs/uploads.md) -------------------------------
    upload_expiry_s: float = Field(default=86400.0, gt=0,
                                   description="An upload in parts that receives no part for this long is deleted "
                                               "with its parts by the purge (a completed one's record too).")
    max_upload_bytes_per_key: int = Field(default=16 * 1024**3, ge=1,
                                          description="Most bytes (n (d + 1) 8 each) one API key's incomplete uploads "
                                                      "in parts may declare together; 429 past it.")

    @field_validator("api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("dask_scheduler", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in ("critical", "error", "warning", "info", "debug"):
            raise ValueError(f"log_level must be one of critical, error, warning, info, debug, got {value!r}")
        return level

    @field_validator("dask_tls_ca_file", "dask_tls_cert", "dask_tls_key", "dask_shared_data_dir", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def database_path(self) -> Path:
        """The SQLite file of jobs and dataset metadata."""
        return Path(self.data_dir) / "cnnrelax.sqlite3"
