"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from .. import __version__
from ..settings import Settings
from . import datasets, experiments, operations, solves
from .dependencies import require_api_key
from .middleware import AccessLog, BodySizeLimit
from .problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from .schemas import Problem
from .service import Service

DESCRIPTION = (
    "Train one-hidden-layer convolutional ReLU networks by the randomized convex relaxation of Bartan & Pilanci "
    "(ICASSP 2019), with certificates of global optimality. Solves and experiments are durable jobs: submit, "
    "then fetch (optionally waiting) until they end. Every error is an RFC 9457 problem document."
)
ERROR_STATUSES = {
    "400": "Malformed request (e.g. invalid JSON).",
    "401": "Missing or invalid X-API-Key (only when keys are configured).",
    "404": "No such resource.",
    "405": "Method not allowed.",
    "409": "Conflict (Idempotency-Key reused with another body, dataset in use, no figure yet).",
    "413": "Request body too large.",
    "415": "Unsupported media type or Content-Encoding.",
    "422": "Invalid parameter: the problem document names it.",
    "429": "Queue full: retry after Retry-After seconds.",
    "500": "Internal error (logged; no details are sent).",
    "503": "Not ready: retry after Retry-After seconds.",
    "507": "The server's disk is full: nothing was stored.",
}
#: Request models that routes read themselves (off the event loop) rather than as FastAPI body parameters.
SELF_PARSED_MODELS = ("SolveRequest", "ExperimentRequest")


def _self_parsed_components() -> dict[str, Any]:
    """The component schemas of :data:`SELF_PARSED_MODELS`, exactly as FastAPI writes a body parameter's."""
    from . import schemas

    scratch = FastAPI()
    for model_name in SELF_PARSED_MODELS:
        model = getattr(schemas, model_name)

        def endpoint(body: Any) -> None:  # never served: only documented
            return None

        endpoint.__annotations__ = {"body": model, "return": None}
        scratch.post(f"/{model_name}")(endpoint)
    generated = get_openapi(title="scratch", version="0", routes=scratch.routes)
    return dict(generated.get("components", {}).get("schemas", {}))


def _problem_openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema with every error answer documented as ``application/problem+json``."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in problem_schema.pop("$defs", {}).items():
        components[name] = definition
    components["Problem"] = problem_schema
    for name, definition in _self_parsed_components().items():
        components.setdefault(name, definition)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem_content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for code in list(responses):
                if code.isdigit() and int(code) >= 400:
                    del responses[code]
            for code, description in ERROR_STATUSES.items():
                responses[code] = {"description": description, "content": problem_content}
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service's app; its lifespan opens the store and starts the dispatcher and the workers."""
    settings = settings or Settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, service.start, loop)
        try:
            yield
        finally:
            await loop.run_in_executor(None, service.stop)

    app = FastAPI(title="cnnrelax", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.service = service
    guarded = [Depends(require_api_key)]
    app.include_router(operations.router)
    app.include_router(solves.router, dependencies=guarded)
    app.include_router(datasets.router, dependencies=guarded)
    app.include_router(experiments.router, dependencies=guarded)
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)
    app.openapi = lambda: _problem_openapi(app)  # type: ignore[method-assign]
    return app
