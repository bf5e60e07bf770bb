"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import inspect
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .. import __version__
from ..settings import Settings
from . import certificates, datasets, downloads, events, experiments, lifecycle, operations, solves, uploads
from .console import install_console
from .cors import install_cors
from .dependencies import require_api_key
from .docs import install_docs
from .middleware import AccessLog, BodySizeLimit
from .openapi_face import document_errors, document_examples, document_request_id, operation_id
from .problems import install_problem_handlers
from .request_id import RequestId
from .schemas import CURSOR_MAX_LENGTH, CURSOR_PATTERN, DatasetJson, Problem
from .service import Service

DESCRIPTION = (
    "Train one-hidden-layer convolutional ReLU networks by the randomized convex relaxation of Bartan & Pilanci "
    "(ICASSP 2019), with certificates of global optimality. Solves and experiments are durable jobs: submit, "
    "then fetch (optionally waiting) until they end. Every error is an RFC 9457 problem document."
)
#: Request models that routes read themselves (off the event loop) rather than as FastAPI body parameters.
SELF_PARSED_MODELS = ("SolveRequest", "ExperimentRequest", "CertifyRequest")


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
    components = dict(generated.get("components", {}).get("schemas", {}))
    for model_name in SELF_PARSED_MODELS:
        # A discriminated union (the experiment kinds) has no component of its own: give it one.
        body = generated["paths"][f"/{model_name}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        if body.get("$ref") != f"#/components/schemas/{model_name}":
            components[model_name] = {**body, "title": model_name}
    return components


#: OpenAPI links from each POST to the operations that use what it created: (POST path, answers, links).
CREATED_LINKS: tuple[tuple[str, tuple[str, ...], dict[str, tuple[str, str, str]]], ...] = (
    ("/v1/solves", ("202",), {
        "GetSolve": ("get", "/v1/solves/{job_id}", "job_id"),
        "CancelSolve": ("delete", "/v1/solves/{job_id}", "job_id"),
    }),
    ("/v1/datasets", ("201", "200"), {
        "GetDataset": ("get", "/v1/datasets/{dataset_id}", "dataset_id"),
        "DeleteDataset": ("delete", "/v1/datasets/{dataset_id}", "dataset_id"),
    }),
    ("/v1/datasets/uploads", ("201",), {
        "GetUpload": ("get", "/v1/datasets/uploads/{upload_id}", "upload_id"),
        "AbortUpload": ("delete", "/v1/datasets/uploads/{upload_id}", "upload_id"),
    }),
    ("/v1/experiments", ("202",), {
        "GetExperiment": ("get", "/v1/experiments/{job_id}", "job_id"),
        "CancelExperiment": ("delete", "/v1/experiments/{job_id}", "job_id"),
        "GetExperimentFigure": ("get", "/v1/experiments/{job_id}/figure.png", "job_id"),
    }),
)


def _add_component(components: dict[str, Any], model: type[BaseModel]) -> None:
    """Put ``model``'s JSON schema (and the models it uses) under ``components.schemas``."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components[model.__name__] = schema


def _cursor_parameters(schema: dict[str, Any]) -> None:
    """State the cursor's form where a listing takes it (the route answers any other string with a 422)."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "cursor" and parameter.get("in") == "query":
                    for option in parameter["schema"].get("anyOf", [parameter["schema"]]):
                        if option.get("type") == "string":
                            option.update(pattern=CURSOR_PATTERN, maxLength=CURSOR_MAX_LENGTH)


def _server_limits(components: dict[str, Any], settings: Settings) -> None:
    """The limits this server is configured with, stated where the request schemas take the values."""
    for request in ("SolveRequest", "CertifyRequest"):  # a certification's body is a solve's and w
        solve = components[request]["properties"]
        solve["trials"]["maximum"] = settings.max_trials
        solve["k"]["anyOf"][0]["maximum"] = settings.max_matrix_entries
    planted = components["PlantedSpecIn"]["properties"]
    for name in ("n", "d", "k"):
        planted[name]["maximum"] = settings.max_matrix_entries
    inline = components["InlineData"]["properties"]
    inline["X"]["maxItems"] = inline["y"]["maxItems"] = settings.max_matrix_entries
    inline["X"]["items"]["maxItems"] = settings.max_matrix_entries


def _problem_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The generated schema, made to say what this server does.

    Every error answer is documented as ``application/problem+json``; the API-key scheme is declared only
    when keys are configured; the configured limits are stated; each POST links to the GET and DELETE of
    what it created; the JSON dataset body's schema is defined.
    """
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _add_component(components, Problem)
    _add_component(components, DatasetJson)
    for name, definition in _self_parsed_components().items():
        components.setdefault(name, definition)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    _server_limits(components, settings)
    _cursor_parameters(schema)
    keys_on = bool(settings.api_keys)
    if not keys_on:
        schema["components"].pop("securitySchemes", None)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.pop("security", None)
    document_errors(schema)
    document_examples(schema)
    paths = schema.get("paths", {})
    for post_path, codes, links in CREATED_LINKS:
        if post_path not in paths:
            continue
        built = {name: {"operationId": paths[target][method]["operationId"],
                        "parameters": {parameter: "$response.body#/id"},
                        "description": f"{method.upper()} {target} of what this POST created."}
                 for name, (method, target, parameter) in links.items() if target in paths}
        for code in codes:
            paths[post_path]["post"]["responses"][code]["links"] = built
    document_request_id(schema)
    app.openapi_schema = schema
    return schema


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: dict[str, Any]) -> list[str]:
    """Every method some route answers at the scope's path (Starlette's 405 names only the first route's)."""
    return [method for method in HTTP_METHODS
            if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)]


def _install_allow(app: FastAPI) -> None:
    """405 answers list in ``Allow`` every method of the path, not only those of the first matching route."""
    base = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
            allowed = ", ".join(allowed_methods(app, dict(request.scope)))
            exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": allowed})
        answer = base(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(StarletteHTTPException, http_error)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service's app; its lifespan opens the store and starts the dispatcher and the workers."""
    settings = settings or Settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        lifecycle.install(loop)  # the log says why the process stops (issue 16)
        await loop.run_in_executor(None, service.start, loop)
        try:
            yield
        finally:
            lifecycle.log.info("shutting down (%s)", lifecycle.last_words())
            await loop.run_in_executor(None, service.stop)

    app = FastAPI(title="cnnrelax", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, generate_unique_id_function=operation_id)
    app.state.service = service
    guarded = [Depends(require_api_key)]
    app.include_router(operations.router)
    app.include_router(solves.router, dependencies=guarded)
    app.include_router(uploads.router, dependencies=guarded)  # before datasets: /v1/datasets/uploads is no dataset id
    app.include_router(datasets.router, dependencies=guarded)
    app.include_router(experiments.router, dependencies=guarded)
    app.include_router(events.router, dependencies=guarded)
    app.include_router(downloads.router, dependencies=guarded)
    app.include_router(certificates.router, dependencies=guarded)
    install_docs(app)
    install_console(app)
    install_problem_handlers(app)
    _install_allow(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, memory_budget=settings.max_body_memory_bytes,
                       streamed_cost=uploads.streamed_body_cost)
    app.add_middleware(AccessLog)
    install_cors(app, settings.cors_origins)
    app.add_middleware(RequestId)  # outermost: every answer (CORS preflights too) and every log line carries the id
    app.openapi = lambda: _problem_openapi(app, settings)  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    return app
