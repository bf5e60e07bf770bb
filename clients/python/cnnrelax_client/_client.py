"""``Client`` and ``AsyncClient``: the same operations, blocking or awaitable."""

from __future__ import annotations

import asyncio
import os
import time
from importlib.metadata import version
from types import TracebackType
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Literal, Mapping, TypeVar, cast

import httpx
import numpy.typing as npt

from ._downloads import certify as certify_flow
from ._downloads import certify_body, download, figure_path, load_npy, load_npz
from ._errors import CnnrelaxConnectionError, CnnrelaxError
from ._events import EndEvent, EventStream, JobEvent, apply_event
from ._flows import (
    Endpoints,
    Flow,
    HttpRequest,
    Sleep,
    experiment_body,
    experiment_succeeded,
    solve_body,
    solve_succeeded,
)
from ._models import (
    Certificate,
    Dataset,
    DatasetPage,
    Experiment,
    ExperimentPage,
    FloatArray,
    Job,
    JobPage,
    SolveResult,
)
from ._options import SolveOptions, TrialOptions, option_members
from ._uploads import upload_large as upload_large_flow

if TYPE_CHECKING:
    from typing import Unpack

__all__ = ["Client", "AsyncClient", "DEFAULT_BASE_URL"]

T = TypeVar("T")
ArrayLike = npt.ArrayLike
JobProgress = Callable[[Job], None]
ExperimentProgress = Callable[[Experiment], None]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
USER_AGENT = f"cnnrelax-client/{version('cnnrelax-client')}"
#: Read when no ``base_url`` is given (then ``DEFAULT_BASE_URL``), as the CLI reads it.
URL_ENV = "CNNRELAX_URL"
#: Read when no ``api_key`` is given.
API_KEY_ENV = "CNNRELAX_API_KEY"
JobKind = Literal["solve", "experiment"]
S = TypeVar("S", Job, Experiment)


def events_path(job: str | Job | Experiment, kind: JobKind) -> tuple[str, str]:
    """The events path of a job (an :class:`Experiment` or ``kind="experiment"``: an experiment's) and its name."""
    if isinstance(job, Experiment) or (not isinstance(job, Job) and kind == "experiment"):
        job_id = job.id if isinstance(job, Experiment) else job
        return f"/v1/experiments/{job_id}/events", f"experiment {job_id}"
    job_id = job.id if isinstance(job, Job) else job
    return f"/v1/solves/{job_id}/events", f"solve {job_id}"


def _job_id(job: str | Job) -> str:
    return job.id if isinstance(job, Job) else job


class _BaseClient:
    """Configuration and request building shared by both clients."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        poll_interval: float = 0.05,
        max_poll_interval: float = 2.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        base_url = base_url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
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
        base_url: str | None = None,
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

    def _stream(self, stream: EventStream, what: str) -> Iterator[JobEvent]:
        """Follow ``stream`` over as many connections as it takes (reconnecting after a failure)."""
        while not stream.done:
            request = stream.request()
            stream.check_deadline(what)
            try:
                timeout = httpx.Timeout(self.timeout, read=stream.read_timeout(self.timeout))
                with self._http.stream(request.method, request.path, headers=request.headers,
                                       timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise CnnrelaxError.from_response(response)
                    for line in response.iter_lines():
                        event = stream.feed(line)
                        if event is not None:
                            yield event
                        if stream.done:
                            return
                        stream.check_deadline(what)
                stream.closed()
            except httpx.TransportError as error:
                stream.check_deadline(what)
                time.sleep(stream.reconnect_delay(self._transport_error(request, error)))

    def _follow(self, snapshot: S, fetch: Callable[[], S], timeout: float | None,
                progress: Callable[[S], None]) -> S:
        """Feed ``progress`` from the job's events until it ends (a snapshot whenever its status or progress
        moves: each trial or cell); return it as fetched at the end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        progress(snapshot)
        if snapshot.done:
            return snapshot
        path, what = events_path(snapshot, "solve")
        for event in self._stream(EventStream(path, deadline=deadline), what):
            changed = apply_event(snapshot, event)
            if changed != snapshot and not isinstance(event, EndEvent):  # a status or progress moved
                progress(changed)
            snapshot = changed
        final = fetch()
        progress(final)
        return final

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
        idempotency_key: str | None = None,
        options: SolveOptions | None = None,
        **option_args: Unpack[SolveOptions],
    ) -> Job:
        """Queue a solve (``POST /v1/solves``) from exactly one source: ``X`` and ``y``, ``dataset_id``,
        or ``planted`` (a dict with ``n, d, k, seed, noise_std``). The solve options (:class:`SolveOptions`:
        ``relaxation``, ``beta``, ``trials``, ``seed``, ``stop_on_certificate``, ``activation``, ...) come as
        keyword arguments and/or ``options``; those left out take the server's defaults. Returns the job as
        accepted (usually ``queued``)."""
        body = solve_body(X, y, dataset_id=dataset_id, planted=planted, options=option_members(options, option_args))
        return self._run(self._endpoints.submit(body, idempotency_key))

    def get(self, job_id: str, *, wait: float | None = None) -> Job:
        """``GET /v1/solves/{id}``; with ``wait`` the server may hold the answer up to that many seconds
        until the job finishes."""
        return self._run(self._endpoints.get(job_id, wait))

    def wait(self, job: str | Job, *, timeout: float | None = None, progress: JobProgress | None = None) -> Job:
        """Wait until the job is succeeded, failed or cancelled, and return it.

        With ``progress``, the job's event stream is followed and ``progress`` is called with a snapshot at
        every event (status, trials run of trials asked in ``.progress``), then with the final job; without
        it, the job is polled with exponential backoff. Raises :class:`CnnrelaxTimeoutError` after ``timeout``
        seconds (the job keeps running on the server)."""
        job_id = job.id if isinstance(job, Job) else job
        if progress is not None:
            return self._follow(self.get(job_id), lambda: self.get(job_id), timeout, progress)
        return self._run(self._endpoints.wait(job_id, timeout, progress, self.poll_interval,
                                              self.max_poll_interval))

    def events(self, job: str | Job | Experiment, *, kind: JobKind = "solve", last_event_id: int | None = None,
               timeout: float | None = None) -> Iterator[JobEvent]:
        """The job's events as they happen (``GET .../events``), typed: :class:`StatusEvent`,
        :class:`TrialEvent`, :class:`CellEvent`, :class:`LogEvent`, and a last :class:`EndEvent`.

        Replays the events after ``last_event_id`` (all, by default), follows the job live and stops after its
        end; a dropped connection is resumed where it stopped (``Last-Event-ID``: no repeats). ``kind`` says
        what a bare id names (an :class:`Experiment` is followed as one). After ``timeout`` seconds,
        :class:`CnnrelaxTimeoutError`."""
        path, what = events_path(job, kind)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._stream(EventStream(path, last_event_id, deadline), what)

    def cancel(self, job: str | Job) -> Job:
        """``DELETE /v1/solves/{id}``: cancel a queued job, or ask a running one to stop (its
        ``cancel_requested`` is then true while it stops); returns its state afterwards."""
        return self._run(self._endpoints.cancel(job.id if isinstance(job, Job) else job))

    def list_jobs(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> JobPage:
        """One page of ``GET /v1/solves`` (newest first; ``.items``), optionally filtered by status."""
        return self._run(self._endpoints.list_jobs(status, limit, cursor))

    def iter_jobs(self, *, status: str | None = None, page_size: int | None = None) -> Iterator[Job]:
        """Every job, following the pagination cursor."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(status=status, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None or not page.items:
                return
            cursor = page.next_cursor

    def solve(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        progress: JobProgress | None = None,
        options: SolveOptions | None = None,
        **option_args: Unpack[SolveOptions],
    ) -> SolveResult:
        """Solve for the filter of ``X`` (n x d) and ``y`` (n) and wait for it (``k`` patches a row, default 1;
        the other options as in :meth:`submit`).

        Returns the result with numpy arrays and its certificate; raises :class:`JobFailedError` if the
        job ends failed or cancelled. ``progress`` follows the job's events (:meth:`wait`)."""
        job = self.submit(X, y, idempotency_key=idempotency_key, options=options, **option_args)
        return solve_succeeded(self.wait(job, timeout=timeout, progress=progress))

    def solve_planted(
        self,
        n: int,
        d: int,
        k: int = 1,
        *,
        seed: int = 0,
        noise_std: float = 0.0,
        distribution: str | None = None,
        trial_seed: int | None = None,
        timeout: float | None = None,
        progress: JobProgress | None = None,
        options: TrialOptions | None = None,
        **option_args: Unpack[TrialOptions],
    ) -> SolveResult:
        """Solve a planted problem that the server draws from ``(n, d, k, seed, noise_std)`` and wait.

        ``seed`` seeds the data; ``trial_seed`` seeds the trials' directions (the solve option ``seed``); the
        other options as in :meth:`submit`. The result carries ``w_star`` and ``recovery_error``."""
        planted = self._planted(n, d, k, seed, noise_std, distribution)
        job = self.submit(planted=planted, options=cast(SolveOptions, {
            **option_members(options, option_args), "seed": trial_seed}))
        return solve_succeeded(self.wait(job, timeout=timeout, progress=progress))

    # -- datasets -------------------------------------------------------------------------------
    def upload_dataset(self, X: ArrayLike, y: ArrayLike) -> Dataset:
        """Upload ``X`` and ``y`` as an ``.npz`` body (``POST /v1/datasets``); the id is content-addressed,
        so uploading the same data twice gives the same id."""
        return self._run(self._endpoints.upload_dataset(X, y))

    def upload_images(self, images: str | os.PathLike[str] | ArrayLike, angles: ArrayLike | None = None) -> Dataset:
        """Upload an image set for rotated digits (``images_dataset_id``): the path of an ``.npz`` file holding
        ``images`` (``N x H x W``) and optional ``angles`` (sent as it is), or the arrays themselves. The
        dataset's ``image_shape`` is ``[H, W]``; the id is content-addressed, as for :meth:`upload_dataset`."""
        return self._run(self._endpoints.upload_images(images, angles))

    def upload_large(self, X: ArrayLike, y: ArrayLike, *, part_rows: int | None = None, upload_id: str | None = None,
                     verify: bool = True, resume_attempts: int = 5) -> Dataset:
        """Upload ``X`` and ``y`` in parts (``/v1/datasets/uploads``): data larger than one request body.

        Each part (``part_rows`` rows, by default about 16 MiB) goes as raw float64 with its SHA-256; ``X`` may be
        memory-mapped (``numpy.load(path, mmap_mode="r")``): one part is read and held at a time. After a
        connection failure the missing parts are asked for and sent (up to ``resume_attempts`` times); an
        ``upload_id`` resumes an upload cut short. ``verify`` declares the content digest (one more pass over
        ``X`` here) so the server checks the whole. Returns the dataset (content-addressed, as
        :meth:`upload_dataset`'s)."""
        return self._run(upload_large_flow(X, y, part_rows=part_rows, upload_id=upload_id, verify=verify,
                                           max_retries=self._endpoints.max_retries, resume_attempts=resume_attempts))

    def get_dataset(self, dataset_id: str) -> Dataset:
        """``GET /v1/datasets/{id}``: the dataset's metadata."""
        return self._run(self._endpoints.get_dataset(dataset_id))

    def list_datasets(self) -> DatasetPage:
        """``GET /v1/datasets``: the caller's datasets, newest first (``.items``)."""
        return self._run(self._endpoints.list_datasets())

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

    def list_experiments(self, *, status: str | None = None, limit: int | None = None,
                         cursor: str | None = None) -> ExperimentPage:
        """One page of ``GET /v1/experiments`` (newest first; ``.items`` are summaries without spec or result)."""
        return self._run(self._endpoints.list_experiments(status, limit, cursor))

    def wait_experiment(self, experiment: str | Experiment, *, timeout: float | None = None,
                        progress: ExperimentProgress | None = None) -> Experiment:
        """Wait until the experiment ends; ``progress`` follows its events (a snapshot per cell done)."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        if progress is not None:
            snapshot = experiment if isinstance(experiment, Experiment) else self.get_experiment(experiment_id)
            return self._follow(snapshot, lambda: self.get_experiment(experiment_id), timeout, progress)
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
        experiment = self.submit_experiment(spec, idempotency_key=idempotency_key, **fields)
        return experiment_succeeded(self.wait_experiment(experiment, timeout=timeout, progress=progress))

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
        base_url: str | None = None,
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

    async def _stream(self, stream: EventStream, what: str) -> AsyncIterator[JobEvent]:
        """See :meth:`Client._stream`."""
        while not stream.done:
            request = stream.request()
            stream.check_deadline(what)
            try:
                timeout = httpx.Timeout(self.timeout, read=stream.read_timeout(self.timeout))
                async with self._http.stream(request.method, request.path, headers=request.headers,
                                             timeout=timeout) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise CnnrelaxError.from_response(response)
                    async for line in response.aiter_lines():
                        event = stream.feed(line)
                        if event is not None:
                            yield event
                        if stream.done:
                            return
                        stream.check_deadline(what)
                stream.closed()
            except httpx.TransportError as error:
                stream.check_deadline(what)
                await asyncio.sleep(stream.reconnect_delay(self._transport_error(request, error)))

    async def _follow(self, snapshot: S, fetch: Callable[[], Any], timeout: float | None,
                      progress: Callable[[S], None]) -> S:
        """See :meth:`Client._follow`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        progress(snapshot)
        if snapshot.done:
            return snapshot
        path, what = events_path(snapshot, "solve")
        async for event in self._stream(EventStream(path, deadline=deadline), what):
            changed = apply_event(snapshot, event)
            if changed != snapshot and not isinstance(event, EndEvent):  # a status or progress moved
                progress(changed)
            snapshot = changed
        final: S = await fetch()
        progress(final)
        return final

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
        idempotency_key: str | None = None,
        options: SolveOptions | None = None,
        **option_args: Unpack[SolveOptions],
    ) -> Job:
        """See :meth:`Client.submit`."""
        body = solve_body(X, y, dataset_id=dataset_id, planted=planted, options=option_members(options, option_args))
        return await self._run(self._endpoints.submit(body, idempotency_key))

    async def get(self, job_id: str, *, wait: float | None = None) -> Job:
        """See :meth:`Client.get`."""
        return await self._run(self._endpoints.get(job_id, wait))

    async def wait(self, job: str | Job, *, timeout: float | None = None,
                   progress: JobProgress | None = None) -> Job:
        """See :meth:`Client.wait`."""
        job_id = job.id if isinstance(job, Job) else job
        if progress is not None:
            return await self._follow(await self.get(job_id), lambda: self.get(job_id), timeout, progress)
        return await self._run(self._endpoints.wait(job_id, timeout, progress, self.poll_interval,
                                                    self.max_poll_interval))

    def events(self, job: str | Job | Experiment, *, kind: JobKind = "solve", last_event_id: int | None = None,
               timeout: float | None = None) -> AsyncIterator[JobEvent]:
        """See :meth:`Client.events` (``async for event in client.events(job_id)``)."""
        path, what = events_path(job, kind)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._stream(EventStream(path, last_event_id, deadline), what)

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
            for job in page.items:
                yield job
            if page.next_cursor is None or not page.items:
                return
            cursor = page.next_cursor

    async def solve(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        progress: JobProgress | None = None,
        options: SolveOptions | None = None,
        **option_args: Unpack[SolveOptions],
    ) -> SolveResult:
        """See :meth:`Client.solve`."""
        job = await self.submit(X, y, idempotency_key=idempotency_key, options=options, **option_args)
        return solve_succeeded(await self.wait(job, timeout=timeout, progress=progress))

    async def solve_planted(
        self,
        n: int,
        d: int,
        k: int = 1,
        *,
        seed: int = 0,
        noise_std: float = 0.0,
        distribution: str | None = None,
        trial_seed: int | None = None,
        timeout: float | None = None,
        progress: JobProgress | None = None,
        options: TrialOptions | None = None,
        **option_args: Unpack[TrialOptions],
    ) -> SolveResult:
        """See :meth:`Client.solve_planted`."""
        planted = self._planted(n, d, k, seed, noise_std, distribution)
        job = await self.submit(planted=planted, options=cast(SolveOptions, {
            **option_members(options, option_args), "seed": trial_seed}))
        return solve_succeeded(await self.wait(job, timeout=timeout, progress=progress))

    async def upload_dataset(self, X: ArrayLike, y: ArrayLike) -> Dataset:
        """See :meth:`Client.upload_dataset`."""
        return await self._run(self._endpoints.upload_dataset(X, y))

    async def upload_images(self, images: str | os.PathLike[str] | ArrayLike,
                            angles: ArrayLike | None = None) -> Dataset:
        """See :meth:`Client.upload_images`."""
        return await self._run(self._endpoints.upload_images(images, angles))

    async def upload_large(self, X: ArrayLike, y: ArrayLike, *, part_rows: int | None = None,
                           upload_id: str | None = None, verify: bool = True, resume_attempts: int = 5) -> Dataset:
        """See :meth:`Client.upload_large`."""
        return await self._run(upload_large_flow(X, y, part_rows=part_rows, upload_id=upload_id, verify=verify,
                                                 max_retries=self._endpoints.max_retries,
                                                 resume_attempts=resume_attempts))

    async def get_dataset(self, dataset_id: str) -> Dataset:
        """See :meth:`Client.get_dataset`."""
        return await self._run(self._endpoints.get_dataset(dataset_id))

    async def list_datasets(self) -> DatasetPage:
        """See :meth:`Client.list_datasets`."""
        return await self._run(self._endpoints.list_datasets())

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

    async def list_experiments(self, *, status: str | None = None, limit: int | None = None,
                               cursor: str | None = None) -> ExperimentPage:
        """See :meth:`Client.list_experiments`."""
        return await self._run(self._endpoints.list_experiments(status, limit, cursor))

    async def wait_experiment(self, experiment: str | Experiment, *, timeout: float | None = None,
                              progress: ExperimentProgress | None = None) -> Experiment:
        """See :meth:`Client.wait_experiment`."""
        experiment_id = experiment.id if isinstance(experiment, Experiment) else experiment
        if progress is not None:
            snapshot = experiment if isinstance(experiment, Experiment) else await self.get_experiment(experiment_id)
            return await self._follow(snapshot, lambda: self.get_experiment(experiment_id), timeout, progress)
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
        experiment = await self.submit_experiment(spec, idempotency_key=idempotency_key, **fields)
        return experiment_succeeded(await self.wait_experiment(experiment, timeout=timeout, progress=progress))

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
