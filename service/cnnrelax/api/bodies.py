"""JSON request bodies read and parsed off the event loop, priced before they are decoded.

A JSON body may be tens of megabytes. Decoding and validating it holds the GIL for the whole parse (in
``json``, in pydantic-core), so a worker thread would still stall the event loop and every other request.
Bodies above :data:`IN_PROCESS_BYTES` are therefore parsed in a helper process (spawned on first use,
then reused, at a lower priority), handed over as a temporary file (a file write releases the GIL,
pickling the body would not); inline ``X`` and ``y`` come back as numpy arrays, so the API never holds
millions of Python floats. Smaller bodies are parsed in a worker thread.

Before decoding, a body is priced by its commas: a JSON body of ``N`` numbers has at least ``N - 1``, so
``count(",") + 1`` bounds the numbers it can hold (``max_inline_numbers``, a 422 naming ``data`` past it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from ..core.problem import InvalidParameterError
from ..experiments.specs import (
    EXPERIMENT_KINDS,
    PhaseTransitionSpec,
    RotatedDigitsSpec,
    invalid_parameter,
    parse_experiment_spec,
)
from ..specs import LimitExceeded, SolveSpec
from .problems import ApiError

#: Bodies larger than this are parsed in the helper process (bytes).
IN_PROCESS_BYTES = 512 * 1024
#: The helper process runs at this lower priority, so that the event loop gets a core first.
PARSER_NICENESS = 10

#: What a parse returns: ("ok", members, X, y) / ("invalid", errors) / ("parameter", name, message, limit, setting).
Parsed = tuple[Any, ...]


@dataclass(frozen=True)
class ParsedBody:
    """A validated request body: a solve's :class:`~cnnrelax.specs.SolveSpec`, an experiment's typed spec (or
    another body's members) and the inline arrays (else ``None``)."""

    members: dict[str, Any]
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    spec: SolveSpec | None = None
    experiment: PhaseTransitionSpec | RotatedDigitsSpec | None = None


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without their inputs (which may be huge) and with picklable contexts."""
    out: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        item: dict[str, Any] = dict(error)
        context = error.get("ctx")
        if context is not None:
            item["ctx"] = {key: str(value) for key, value in context.items()}
        out.append(item)
    return out


def _matrix(rows: list[list[float]], parameter: str) -> np.ndarray:
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise InvalidParameterError(parameter, f"The rows of {parameter} have different lengths "
                                               f"({sorted(widths)[:5]}); {parameter} must be an n x d matrix.")
    return np.array(rows, dtype=np.float64).reshape(len(rows), widths.pop() if widths else 0)


def _option_numbers(request: Any) -> dict[str, int]:
    """How many numbers each list of a solve's options holds (``output_weights``, ``constraints.*``)."""
    counts: dict[str, int] = {}
    if request.output_weights is not None:
        counts["output_weights"] = len(request.output_weights)
    for name in ("lower", "upper", "equality_matrix", "equality_vector", "inequality_matrix", "inequality_vector"):
        value = getattr(request.constraints, name, None)
        if isinstance(value, list):
            counts[f"constraints.{name}"] = sum(len(row) if isinstance(row, list) else 1 for row in value)
    return counts


def parse_json_body(body: bytes, model: str, max_numbers: int, max_constraint_numbers: int | None = None) -> Parsed:
    """Price, decode and validate a JSON body against ``model``; top-level and picklable.

    Parameters
    ----------
    body : bytes
        The raw request body.
    model : str
        ``"solve"`` (:class:`~cnnrelax.api.schemas.SolveRequest`), ``"experiment"``
        (:class:`~cnnrelax.api.schemas.ExperimentRequest`, returned as its typed spec) or ``"dataset"``
        (:class:`~cnnrelax.api.schemas.DatasetJson`).
    max_numbers : int
        The most numbers the body may hold (counted by its commas, before decoding).
    max_constraint_numbers : int, optional
        The most numbers a solve's ``constraints`` and ``output_weights`` may hold (they stay in the stored
        request).

    Returns
    -------
    tuple
        ``("ok", members, X, y)`` with inline ``X``/``y`` as float64 arrays (``None`` without inline data) and
        ``members`` a :class:`~cnnrelax.specs.SolveSpec` for a solve, the typed spec
        (:data:`cnnrelax.experiments.specs.ExperimentSpec`) for an experiment,
        ``("invalid", errors)`` with pydantic's errors, or ``("parameter", name, message, limit, setting)``.
    """
    from ..experiments.specs import RotatedDigitsRequest
    from .schemas import DatasetJson, SolveRequest
    from .schemas_experiments import ExperimentRequest, PhaseTransitionRequest

    numbers = body.count(b",") + 1
    if numbers > max_numbers:
        if model == "experiment":
            return ("parameter", "images", f"The JSON body holds up to {numbers} numbers (by its commas), more than "
                                           "this server takes in an experiment's spec; send fewer or smaller images.",
                    max_numbers, None)
        return ("parameter", "data", f"The JSON body holds up to {numbers} numbers (by its commas), more than this "
                                     "server decodes from JSON; upload large data as a .npz dataset (POST "
                                     "/v1/datasets) and solve it by dataset_id.", max_numbers, None)
    try:
        if model == "solve":
            request = SolveRequest.model_validate_json(body)
            counts = _option_numbers(request)
            if max_constraint_numbers is not None and sum(counts.values()) > max_constraint_numbers:
                largest = max(counts, key=counts.__getitem__)
                return ("parameter", largest,
                        f"The options hold {sum(counts.values())} numbers ({largest}: {counts[largest]}), more than "
                        "this server takes in one solve's constraints and output_weights.", max_constraint_numbers,
                        "CNNRELAX_MAX_CONSTRAINT_NUMBERS")
            spec = SolveSpec.model_validate(request.model_dump(exclude_none=True, exclude={"data"}))
            if request.data is None:
                return ("ok", spec, None, None)
            X, y = _matrix(request.data.X, "X"), np.array(request.data.y, dtype=np.float64)
            if y.shape[0] != X.shape[0]:
                raise InvalidParameterError("y", f"y has {y.shape[0]} labels but X has {X.shape[0]} rows: they "
                                                 "must match.")
            return ("ok", spec, X, y)
        elif model == "experiment":
            experiment: PhaseTransitionRequest | RotatedDigitsRequest = TypeAdapter(
                ExperimentRequest).validate_json(body)
            # The typed spec, built here at the boundary (a phase-transition request already is one).
            return ("ok", parse_experiment_spec(experiment if isinstance(experiment, PhaseTransitionSpec)
                                                else experiment.model_dump(exclude_none=True)), None, None)
        else:
            dataset = DatasetJson.model_validate_json(body)
            members: dict[str, Any] = {}
            X, y = _matrix(dataset.X, "X"), np.array(dataset.y, dtype=np.float64)
    except ValidationError as exc:
        if model == "dataset":  # uploads answer one sentence naming the member, as binary uploads do
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "body"
            return ("parameter", where, f"The JSON dataset is not valid at {where}: {first['msg']}.", None, None)
        if model == "experiment":  # a check across members names its parameter itself
            raised = invalid_parameter(exc)
            if any((error.get("ctx") or {}).get("error") is raised for error in exc.errors(include_url=False)):
                return ("parameter", raised.parameter, raised.message, None, None)
        errors = _errors(exc)
        if model == "experiment":  # the union's tag is the request's own "kind", not a member: drop it
            for error in errors:
                loc = tuple(error.get("loc", ()))
                if len(loc) > 1 and loc[0] in EXPERIMENT_KINDS:
                    error["loc"] = loc[1:]
        return ("invalid", errors)
    except InvalidParameterError as exc:
        return ("parameter", exc.parameter, exc.message, None, None)
    return ("ok", members, X, y)


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(PARSER_NICENESS)


def parse_json_file(path: str, model: str, max_numbers: int, max_constraint_numbers: int | None = None) -> Parsed:
    """:func:`parse_json_body` of a body handed over as a file (read, then deleted, by the helper process)."""
    try:
        with open(path, "rb") as handle:
            body = handle.read()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return parse_json_body(body, model, max_numbers, max_constraint_numbers)


def _spool(body: bytes) -> str:
    """Write ``body`` to a temporary file (a thread: the write releases the GIL, where pickling it would not)."""
    handle, path = tempfile.mkstemp(prefix="cnnrelax-body-", suffix=".json")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(body)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


class BodyParser:
    """Parses JSON bodies: small ones in a thread, large ones in one reused helper process (spawn)."""

    def __init__(self, max_numbers: int, processes: int = 1, max_constraint_numbers: int | None = None) -> None:
        self.max_numbers = max_numbers
        self.max_constraint_numbers = max_constraint_numbers
        self.processes = processes
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = cf.ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_lower_priority)
            return self._pool

    async def parse(self, body: bytes, model: str, max_numbers: int | None = None,
                    setting: str = "CNNRELAX_MAX_INLINE_NUMBERS") -> ParsedBody:
        """The validated body; raises ``RequestValidationError`` (422/400) or ``InvalidParameterError`` (422).

        Parameters
        ----------
        body : bytes
            The raw body.
        model : str
            See :func:`parse_json_body`.
        max_numbers : int, optional
            The most numbers the body may hold (default: the parser's), named by ``setting`` when exceeded.
        setting : str
            The setting behind ``max_numbers``.

        Returns
        -------
        ParsedBody
            The members, and the inline arrays of a solve.
        """
        limit = self.max_numbers if max_numbers is None else max_numbers
        if len(body) <= IN_PROCESS_BYTES:
            parsed = await run_in_threadpool(parse_json_body, body, model, limit, self.max_constraint_numbers)
        else:
            pool = self._executor()
            path = await run_in_threadpool(_spool, body)  # handed over as a file: no pickling under the GIL
            try:
                parsed = await asyncio.wrap_future(pool.submit(parse_json_file, path, model, limit,
                                                               self.max_constraint_numbers))
            except cf.process.BrokenProcessPool:
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                raise ApiError(503, "The body parser process died (out of memory?) while reading this request; "
                                    "send large data as a .npz dataset.", title="Parser unavailable",
                               headers={"Retry-After": "1"}) from None
            finally:  # the helper deletes it; this covers a helper that never got to it
                with contextlib.suppress(OSError):
                    os.unlink(path)
        if parsed[0] == "invalid":
            errors = [{**error, "loc": ("body", *error.get("loc", ()))} for error in parsed[1]]
            raise RequestValidationError(errors)
        if parsed[0] == "parameter":
            _, parameter, message, limit, named = parsed
            if limit is not None:
                raise LimitExceeded(parameter, message, limit=limit, setting=named or setting)
            raise InvalidParameterError(parameter, message)
        _, members, X, y = parsed
        if isinstance(members, SolveSpec):
            return ParsedBody({}, X, y, spec=members)
        if isinstance(members, (PhaseTransitionSpec, RotatedDigitsSpec)):
            return ParsedBody({}, experiment=members)
        return ParsedBody(members, X, y)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


async def read_body(request: Request) -> bytes:
    """The whole body, streamed in (the size limit applies while it arrives); nothing is cached on ``request``."""
    chunks = [chunk async for chunk in request.stream()]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def require_json(request: Request) -> None:
    """415 unless the Content-Type is JSON (or absent)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, f"This route takes application/json, got Content-Type {media}.",
                       title="Unsupported media type", parameter="Content-Type")
