"""``Client`` and ``AsyncClient``: the same operations, blocking or awaitable."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version
from types import TracebackType
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, TypeVar, cast

import httpx
import numpy.typing as npt

from ._downloads import certify as certify_flow
from ._downloads import certify_body, download, figure_path, load_npy, load_npz
from ._errors import CnnrelaxConnectionError
from ._flows import Endpoints, Flow, HttpRequest, Sleep, experiment_body, solve_body
from ._models import Certificate, Dataset, Experiment, FloatArray, Job, JobPage, SolveResult

__all__ = ["Client", "AsyncClient", "DEFAULT_BASE_URL"]

T = TypeVar("T")
ArrayLike = npt.ArrayLike
JobProgress = Callable[[Job], None]
ExperimentProgress = Callable[[Experiment], None]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
USER_AGENT = f"cnnrelax-client/{version('cnnrelax-client')}"


def _job_id(job: str | Job) -> str:
    return job.id if isinstance(job, Job) else job


class _BaseClient:
    """Configuration and request building shared by both clients."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        poll_interval: float = 0.05,
        max_poll_interval: float = 2.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self._endpoints = Endpoints(max_retries=max_retries)
        self._headers: dict[str, str] = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            self._headers["X-API-Key"] = api_key
        self._headers.update(headers or {})

    def _build(self, http: httpx.Client | httpx.AsyncClient, request: HttpRequest) -> httpx.Request:
        return http.build_request(
            request.method, request.path, params=request.params, json=request.json, content=request.content,
            headers=request.headers or None,
            timeout=httpx.Timeout(self.timeout + request.extra_timeout),
        )

    def _transport_error(self, request: HttpRequest, error: httpx.TransportError) -> CnnrelaxConnectionError:
        return CnnrelaxConnectionError(
            f"Could not complete {request.method} {self.base_url}{request.path}: {error or type(error).__name__}.",
            title="Service unreachable", type="about:blank")

    @staticmethod
    def _options(
        k: int | None, relaxation: str | None, beta: float | None, trials: int | None, seed: int | None,
        output_weights: ArrayLike | None, stop_on_certificate: bool | None, polish: bool | None,
        extra: Mapping[str, Any],
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "k": k, "relaxation": relaxation, "beta": beta, "trials": trials, "seed": seed,
            "output_weights": output_weights, "stop_on_certificate": stop_on_certificate, "polish": polish,
        }
        options.update(extra)
        return options

    @staticmethod
    def _planted(n: int, d: int, k: int, seed: int, noise_std: float, distribution: str | None) -> dict[str, Any]:
        planted: dict[str, Any] = {"n": n, "d": d, "k": k, "seed": seed, "noise_std": noise_std}
        if distribution is not None:
            planted["distribution"] = distribution
        return planted


class Client(_BaseClient):
    """A blocking client of the cnnrelax service.

    >>> with Client("http://127.0.0.1:8000") as client:          # doctest: +SKIP
    ...     result = client.solve_planted(n=500, d=20, k=1, seed=0)
    ...     result.w, result.certificate.global_optimum

    Every method raises :class:`CnnrelaxError` (or a subclass) on failure, carrying the problem details.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        poll_interval: float = 0.05,
        max_poll_interval: float = 2.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         poll_interval=poll_interval, max_poll_interval=max_poll_interval, headers=headers)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout,
                                  transport=transport)

    # -- plumbing -------------------------------------------------------------------------------
    def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                try:
                    response = self._http.send(self._build(self._http, step))
                    response.read()
                except httpx.TransportError as error:
                    step = flow.throw(self._transport_error(step, error))
                    continue
                step = flow.send(response)
        except StopIteration as stop:
            return cast(T, stop.value)  # a flow's return value is its result

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- service --------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /healthz``: the service's liveness answer."""
        return self._run(self._endpoints.health())

    # -- solves ---------------------------------------------------------------------------------
    def submit(
        self,
        X: ArrayLike | None = None,
        y: ArrayLike | None = None,
        *,
        dataset_id: str | None = None,
        planted: Mapping[str, Any] | None = None,
        k: int | None = None,
        relaxation: str | None = None,
        beta: float | None = None,
        trials: int | None = None,
        seed: int | None = None,
        output_weights: ArrayLike | None = None,
        stop_on_certificate: bool | None = None,
        polish: bool | None = None,
        activation: str | None = None,
        negative_slope: float | None = None,
        idempotency_key: str | None = None,
        **extra_options: Any,
    ) -> Job:
        """Queue a solve (``POST /v1/solves``) from exactly one source: ``X`` and ``y``, ``dataset_id``,
        or ``planted`` (a dict with ``n, d, k, seed, noise_std``). Options left ``None`` take the server's
        defaults. ``activation`` is the hidden layer's (``relu``, ``leaky_relu`` with ``negative_slope`` in
        (0, 1), ``absolute``, ``squared_relu``, ``softplus``); a planted model's labels are drawn with it.
        Returns the job as accepted (usually ``queued``)."""
        body = solve_body(X, y, dataset_id=dataset_id, planted=planted, options=self._options(
            k, relaxation, beta, trials, seed, output_weights, stop_on_certificate, polish,
            {"activation": activation, "negative_slope": negative_slope, **extra_options}))
        return self._run(self._endpoints.submit(body, idempotency_key))

    def get(self, job_id: str, *, wait: float | None = None) -> Job:
        """``GET /v1/solves/{id}``; with ``wait`` the server may hold the answer up to that many seconds
        until the job finishes."""
        return self._run(self._endpoints.get(job_id, wait))

    def wait(self, job: str | Job, *, timeout: float | None = None, progress: JobProgress | None = None) -> Job:
        """Poll with exponential backoff until the job is succeeded, failed or cancelled, and return it.

        ``progress`` is called with every snapshot. Raises :class:`CnnrelaxTimeoutError` after
        ``timeout`` seconds (the job keeps running on the server)."""
        job_id = job.id if isinstance(job, Job) else job
        return self._run(self._endpoints.wait(job_id, timeout, progress, self.poll_interval,
                                              self.max_poll_interval))

    def cancel(self, job: str | Job) -> Job:
        """``DELETE /v1/solves/{id}``: cancel a queued or running job; returns its state afterwards."""
        return self._run(self._endpoints.cancel(job.id if isinstance(job, Job) else job))

    def list_jobs(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> JobPage:
        """One page of ``GET /v1/solves`` (newest first), optionally filtered by status."""
        return self._run(self._endpoints.list_jobs(status, limit, cursor))

    def iter_jobs(self, *, status: str | None = None, page_size: int | None = None) -> Iterator[Job]:
        """Every job, following the pagination cursor."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(status=status, limit=page_size, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None or not page.jobs:
                return
            cursor = page.next_cursor

    def solve(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        k: int = 1,
        relaxation: str | None = None,
        beta: float | None = None,
        trials: int | None = None,
        seed: int | None = None,
        output_weights: ArrayLike | None = None,
        stop_on_certificate: bool | None = None,
        polish: bool | None = None,
        activation: str | None = None,
        negative_slope: float | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        progress: JobProgress | None = None,
        **extra_options: Any,
    ) -> SolveResult:
        """Solve for the filter of ``X`` (n x d) and ``y`` (n) with ``k`` patches, and wait for it.

        Returns the result with numpy arrays and its certificate; raises :class:`JobFailedError` if the
        job ends failed or cancelled."""
        body = solve_body(X, y, dataset_id=None, planted=None, options=self._options(
            k, relaxation, beta, trials, seed, output_weights, stop_on_certificate, polish,
            {"activation": activation, "negative_slope": negative_slope, **extra_options}))
        return self._run(self._endpoints.solve(body, idempotency_key, timeout, progress, self.poll_interval,
                                               self.max_poll_interval))

    def solve_planted(
        self,
        n: int,
        d: int,
        k: int = 1,
        *,
        seed: int = 0,
        noise_std: float = 0.0,
        distribution: str | None = None,
        relaxation: str | None = None,
        beta: float | None = None,
        trials: int | None = None,
        trial_seed: int | None = None,
        stop_on_certificate: bool | None = None,
        polish: bool | None = None,
        activation: str | None = None,
        negative_slope: float | None = None,
        timeout: float | None = None,
        progress: JobProgress | None = None,
        **extra_options: Any,
    ) -> SolveResult:
        """Solve a planted problem that the server draws from ``(n, d, k, seed, noise_std)`` and wait.

        ``seed`` seeds the data; ``trial_seed`` seeds the trials' directions (the solve option ``seed``).
        The result carries ``w_star`` and ``recovery_error``."""
        body = solve_body(None, None, dataset_id=None, planted=self._planted(n, d, k, seed, noise_std, distribution),
                          options=self._options(None, relaxation, beta, trials, trial_seed, None,
                                                stop_on_certificate, polish,
                                                {"activation": activation, "negative_slope": negative_slope,
                                                 **extra_options}))
        return self._run(self._endpoints.solve(body, None, timeout, progress, self.poll_interval,
                                               self.max_poll_interval))

    # -- datasets -------------------------------------------------------------------------------
    def upload_dataset(self, X: ArrayLike, y: ArrayLike) -> Dataset:
        """Upload ``X`` and ``y`` as an ``.npz`` body (``POST /v1/datasets``); the id is content-addressed,
        so uploading the same data twice gives the same id."""
        return self._run(self._endpoints.upload_dataset(X, y))

    def get_dataset(self, dataset_id: str) -> Dataset:
        """``GET /v1/datasets/{id}``: the dataset's metadata."""
        return self._run(self._endpoints.get_dataset(dataset_id))

    def delete_dataset(self, dataset_id: str) -> None:
        """``DELETE /v1/datasets/{id}``."""
        self._run(self._endpoints.delete_dataset(dataset_id))

    # -- experiments ----------------------------------------------------------------------------
    def submit_experiment(self, spec: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None,
                          **fields: Any) -> Experiment:
        """Queue an experiment (``POST /v1/experiments``) from a spec dict and/or keyword fields, e.g.
        ``kind="phase_transition", k=1, d=[10, 20], n=[50, 100], repetitions=5, seed=0``."""
        return self._run(self._endpoints.submit_experiment(experiment_body(spec, fields), idempotency_key))

    def get_experiment(self, experiment_id: str, *, wait: float | None = None) -> Experiment:
        """``GET /v1/experiments/{id}``: status, progress and, once succeeded, the result."""
        return self._run(self._endpoints.get_experiment(experiment_id, wait))

    def wait_experiment(self, experiment: str | Experiment, *, timeout: float | None = None,
                        progress: ExperimentProgress | None = None) -> Experiment:
        """Poll with backoff until the experiment ends; ``progress`` sees every snapshot."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        return self._run(self._endpoints.wait_experiment(experiment_id, timeout, progress, self.poll_interval,
                                                         self.max_poll_interval))

    def cancel_experiment(self, experiment: str | Experiment) -> Experiment:
        """``DELETE /v1/experiments/{id}``: stop a queued or running experiment."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        return self._run(self._endpoints.cancel_experiment(experiment_id))

    def run_experiment(self, spec: Mapping[str, Any] | None = None, *, progress: ExperimentProgress | None = None,
                       timeout: float | None = None, idempotency_key: str | None = None,
                       **fields: Any) -> Experiment:
        """Submit an experiment and wait for it; returns the succeeded experiment (``.result`` is the
        service's result dict). ``progress`` is called with each snapshot (``.progress.done/.total``)."""
        return self._run(self._endpoints.run_experiment(experiment_body(spec, fields), idempotency_key, timeout,
                                                        progress, self.poll_interval, self.max_poll_interval))

    def experiment_figure(self, experiment: str | Experiment) -> bytes:
        """``GET /v1/experiments/{id}/figure.png``: the experiment's figure as PNG bytes."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        return self._run(self._endpoints.experiment_figure(experiment_id))


    # -- certificates and downloads ---------------------------------------------------------------
    def certify(self, w: ArrayLike, X: ArrayLike | None = None, y: ArrayLike | None = None, *,
                dataset_id: str | None = None, planted: Mapping[str, Any] | None = None,
                timeout: float | None = None, **options: Any) -> Certificate:
        """``POST /v1/certificates``: what is proven about the filter ``w`` (zero loss, the cone test and coverage,
        stationarity, KKT under constraints, a summary) for the data ``X``, ``y`` (or ``dataset_id``, or
        ``planted``) and a solve's options (``k``, ``activation``, ``constraints``, ``trials``, ``seed``, ...).
        A large problem is queued by the server: this waits for it (up to ``timeout`` seconds)."""
        body = certify_body(w, X, y, dataset_id, planted, options)
        return self._run(certify_flow(body, max_retries=self._endpoints.max_retries, timeout=timeout,
                                      poll_interval=self.poll_interval, max_poll_interval=self.max_poll_interval))

    def _download(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        return self._run(download(path, max_retries=self._endpoints.max_retries, params=params))

    def download_filter(self, job: str | Job) -> FloatArray:
        """``GET /v1/solves/{id}/filter.npy``: the selected filter."""
        return load_npy(self._download(f"/v1/solves/{_job_id(job)}/filter.npy"))

    def download_result(self, job: str | Job) -> dict[str, FloatArray]:
        """``GET /v1/solves/{id}/result.npz``: ``w``, ``w_star`` (planted), ``r`` and ``trial_w`` (trials x m), the
        trials' losses and objectives (NaN where the JSON has null)."""
        return load_npz(self._download(f"/v1/solves/{_job_id(job)}/result.npz"))

    def download_model(self, job: str | Job) -> bytes:
        """``GET /v1/solves/{id}/model.onnx``: the fitted network as ONNX bytes (input ``X`` (N, d) float64)."""
        return self._download(f"/v1/solves/{_job_id(job)}/model.onnx")

    def download_dataset(self, dataset_id: str) -> tuple[FloatArray, FloatArray]:
        """``GET /v1/datasets/{id}/data.npz``: the dataset's ``X`` and ``y``."""
        arrays = load_npz(self._download(f"/v1/datasets/{dataset_id}/data.npz"))
        return arrays["X"], arrays["y"]

    def download_figure(self, experiment: str | Experiment, format: str = "png", dpi: int | None = None) -> bytes:
        """An experiment's figure as ``format`` bytes (png, svg or pdf), at ``dpi`` dots per inch if given."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        return self._download(figure_path(experiment_id, format), None if dpi is None else {"dpi": dpi})

class AsyncClient(_BaseClient):
    """The awaitable twin of :class:`Client`: the same methods, as coroutines.

    >>> async with AsyncClient("http://127.0.0.1:8000") as client:   # doctest: +SKIP
    ...     result = await client.solve(X, y, k=2)
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        poll_interval: float = 0.05,
        max_poll_interval: float = 2.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         poll_interval=poll_interval, max_poll_interval=max_poll_interval, headers=headers)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=timeout,
                                       transport=transport)

    async def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                try:
                    response = await self._http.send(self._build(self._http, step))
                    await response.aread()
                except httpx.TransportError as error:
                    step = flow.throw(self._transport_error(step, error))
                    continue
                step = flow.send(response)
        except StopIteration as stop:
            return cast(T, stop.value)  # a flow's return value is its result

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        return await self._run(self._endpoints.health())

    async def submit(
        self,
        X: ArrayLike | None = None,
        y: ArrayLike | None = None,
        *,
        dataset_id: str | None = None,
        planted: Mapping[str, Any] | None = None,
        k: int | None = None,
        relaxation: str | None = None,
        beta: float | None = None,
        trials: int | None = None,
        seed: int | None = None,
        output_weights: ArrayLike | None = None,
        stop_on_certificate: bool | None = None,
        polish: bool | None = None,
        activation: str | None = None,
        negative_slope: float | None = None,
        idempotency_key: str | None = None,
        **extra_options: Any,
    ) -> Job:
        """See :meth:`Client.submit`."""
        body = solve_body(X, y, dataset_id=dataset_id, planted=planted, options=self._options(
            k, relaxation, beta, trials, seed, output_weights, stop_on_certificate, polish,
            {"activation": activation, "negative_slope": negative_slope, **extra_options}))
        return await self._run(self._endpoints.submit(body, idempotency_key))

    async def get(self, job_id: str, *, wait: float | None = None) -> Job:
        """See :meth:`Client.get`."""
        return await self._run(self._endpoints.get(job_id, wait))

    async def wait(self, job: str | Job, *, timeout: float | None = None,
                   progress: JobProgress | None = None) -> Job:
        """See :meth:`Client.wait`."""
        job_id = job.id if isinstance(job, Job) else job
        return await self._run(self._endpoints.wait(job_id, timeout, progress, self.poll_interval,
                                                    self.max_poll_interval))

    async def cancel(self, job: str | Job) -> Job:
        """See :meth:`Client.cancel`."""
        return await self._run(self._endpoints.cancel(job.id if isinstance(job, Job) else job))

    async def list_jobs(self, *, status: str | None = None, limit: int | None = None,
                        cursor: str | None = None) -> JobPage:
        """See :meth:`Client.list_jobs`."""
        return await self._run(self._endpoints.list_jobs(status, limit, cursor))

    async def iter_jobs(self, *, status: str | None = None, page_size: int | None = None) -> AsyncIterator[Job]:
        """See :meth:`Client.iter_jobs`."""
        cursor: str | None = None
        while True:
            page = await self.list_jobs(status=status, limit=page_size, cursor=cursor)
            for job in page.jobs:
                yield job
            if page.next_cursor is None or not page.jobs:
                return
            cursor = page.next_cursor

    async def solve(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        k: int = 1,
        relaxation: str | None = None,
        beta: float | None = None,
        trials: int | None = None,
        seed: int | None = None,
        output_weights: ArrayLike | None = None,
        stop_on_certificate: bool | None = None,
        polish: bool | None = None,
        activation: str | None = None,
        negative_slope: float | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        progress: JobProgress | None = None,
        **extra_options: Any,
    ) -> SolveResult:
        """See :meth:`Client.solve`."""
        body = solve_body(X, y, dataset_id=None, planted=None, options=self._options(
            k, relaxation, beta, trials, seed, output_weights, stop_on_certificate, polish,
            {"activation": activation, "negative_slope": negative_slope, **extra_options}))
        return await self._run(self._endpoints.solve(body, idempotency_key, timeout, progress, self.poll_interval,
                                                     self.max_poll_interval))

    async def solve_planted(
        self,
        n: int,
        d: int,
        k: int = 1,
        *,
        seed: int = 0,
        noise_std: float = 0.0,
        distribution: str | None = None,
        relaxation: str | None = None,
        beta: float | None = None,
        trials: int | None = None,
        trial_seed: int | None = None,
        stop_on_certificate: bool | None = None,
        polish: bool | None = None,
        activation: str | None = None,
        negative_slope: float | None = None,
        timeout: float | None = None,
        progress: JobProgress | None = None,
        **extra_options: Any,
    ) -> SolveResult:
        """See :meth:`Client.solve_planted`."""
        body = solve_body(None, None, dataset_id=None, planted=self._planted(n, d, k, seed, noise_std, distribution),
                          options=self._options(None, relaxation, beta, trials, trial_seed, None,
                                                stop_on_certificate, polish,
                                                {"activation": activation, "negative_slope": negative_slope,
                                                 **extra_options}))
        return await self._run(self._endpoints.solve(body, None, timeout, progress, self.poll_interval,
                                                     self.max_poll_interval))

    async def upload_dataset(self, X: ArrayLike, y: ArrayLike) -> Dataset:
        """See :meth:`Client.upload_dataset`."""
        return await self._run(self._endpoints.upload_dataset(X, y))

    async def get_dataset(self, dataset_id: str) -> Dataset:
        """See :meth:`Client.get_dataset`."""
        return await self._run(self._endpoints.get_dataset(dataset_id))

    async def delete_dataset(self, dataset_id: str) -> None:
        """See :meth:`Client.delete_dataset`."""
        await self._run(self._endpoints.delete_dataset(dataset_id))

    async def submit_experiment(self, spec: Mapping[str, Any] | None = None, *,
                                idempotency_key: str | None = None, **fields: Any) -> Experiment:
        """See :meth:`Client.submit_experiment`."""
        return await self._run(self._endpoints.submit_experiment(experiment_body(spec, fields), idempotency_key))

    async def get_experiment(self, experiment_id: str, *, wait: float | None = None) -> Experiment:
        """See :meth:`Client.get_experiment`."""
        return await self._run(self._endpoints.get_experiment(experiment_id, wait))

    async def wait_experiment(self, experiment: str | Experiment, *, timeout: float | None = None,
                              progress: ExperimentProgress | None = None) -> Experiment:
        """See :meth:`Client.wait_experiment`."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        return await self._run(self._endpoints.wait_experiment(experiment_id, timeout, progress,
                                                               self.poll_interval, self.max_poll_interval))

    async def cancel_experiment(self, experiment: str | Experiment) -> Experiment:
        """See :meth:`Client.cancel_experiment`."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        return await self._run(self._endpoints.cancel_experiment(experiment_id))

    async def run_experiment(self, spec: Mapping[str, Any] | None = None, *,
                             progress: ExperimentProgress | None = None, timeout: float | None = None,
                             idempotency_key: str | None = None, **fields: Any) -> Experiment:
        """See :meth:`Client.run_experiment`."""
        return await self._run(self._endpoints.run_experiment(experiment_body(spec, fields), idempotency_key,
                                                              timeout, progress, self.poll_interval,
                                                              self.max_poll_interval))

    async def experiment_figure(self, experiment: str | Experiment) -> bytes:
        """See :meth:`Client.experiment_figure`."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        return await self._run(self._endpoints.experiment_figure(experiment_id))

    # -- certificates and downloads ---------------------------------------------------------------
    async def certify(self, w: ArrayLike, X: ArrayLike | None = None, y: ArrayLike | None = None, *,
                      dataset_id: str | None = None, planted: Mapping[str, Any] | None = None,
                      timeout: float | None = None, **options: Any) -> Certificate:
        """See :meth:`Client.certify`."""
        body = certify_body(w, X, y, dataset_id, planted, options)
        return await self._run(certify_flow(body, max_retries=self._endpoints.max_retries, timeout=timeout,
                                            poll_interval=self.poll_interval,
                                            max_poll_interval=self.max_poll_interval))

    async def _download(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        return await self._run(download(path, max_retries=self._endpoints.max_retries, params=params))

    async def download_filter(self, job: str | Job) -> FloatArray:
        """See :meth:`Client.download_filter`."""
        return load_npy(await self._download(f"/v1/solves/{_job_id(job)}/filter.npy"))

    async def download_result(self, job: str | Job) -> dict[str, FloatArray]:
        """See :meth:`Client.download_result`."""
        return load_npz(await self._download(f"/v1/solves/{_job_id(job)}/result.npz"))

    async def download_model(self, job: str | Job) -> bytes:
        """See :meth:`Client.download_model`."""
        return await self._download(f"/v1/solves/{_job_id(job)}/model.onnx")

    async def download_dataset(self, dataset_id: str) -> tuple[FloatArray, FloatArray]:
        """See :meth:`Client.download_dataset`."""
        arrays = load_npz(await self._download(f"/v1/datasets/{dataset_id}/data.npz"))
        return arrays["X"], arrays["y"]

    async def download_figure(self, experiment: str | Experiment, format: str = "png",
                              dpi: int | None = None) -> bytes:
        """See :meth:`Client.download_figure`."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        return await self._download(figure_path(experiment_id, format), None if dpi is None else {"dpi": dpi})
