"""The console's pages: server-rendered HTML (Jinja2) that htmx refreshes in place; no build step, no CDN.

``/`` leads to ``/console``. With API keys configured, ``/console/login`` takes a key (a password field, posted
in the body, never in a URL) and opens a session (:mod:`.sessions`) that holds the key's tenant; every page then
shows that tenant's work only, read with the same owner scoping as the API (an admin key sees everyone's), and
another tenant's job is a 404. Without keys, the console is the anonymous tenant's, like the API.

Pages: the jobs (solves and experiments, a fragment polled every second), a solve (status, the certificate in
words, the filter drawn as SVG, the trials' objective and loss; polled until it ends), an experiment (its
figure and the table of its cells), the datasets, and a form that submits a planted solve (through the same
parsing, checks and queue as ``POST /v1/solves``). Every form carries its session's token (CSRF), and the
session cookie is ``SameSite=Strict``. Every page is sent with a strict Content-Security-Policy: scripts,
styles, images and requests from this origin only; no inline script or style.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ...errors import InvalidParameterError
from ...store import ANONYMOUS, JobRecord
from ...types import TERMINAL_STATUSES, JobStatus
from ..bodies import parse_json_body
from ..dependencies import Tenant, get_service, require_api_key
from ..docs import STATIC_PREFIX
from ..problems import ApiError
from ..service import Service
from ..views import dataset_view, experiment_view, job_summary, job_view
from . import svg
from .sessions import COOKIE, COOKIE_PATH, Session, Sessions

HERE = Path(__file__).resolve().parent
PREFIX = "/console"
#: The policy of every console page: this origin only, no inline script or style, not framed.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
#: Jobs shown per kind on the jobs page (newest first).
JOBS_SHOWN = 50
#: The planted solve the form starts from.
FORM_DEFAULTS: dict[str, Any] = {"n": 200, "d": 10, "k": 1, "seed": 0, "noise_std": 0.0, "trials": 4,
                                 "relaxation": "lp", "activation": "relu"}
ACTIVATIONS = ("relu", "leaky_relu", "absolute", "squared_relu", "softplus")
RELAXATIONS = ("lp", "qp", "naive")

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))


class LoginRequired(Exception):
    """Raised by :func:`viewer` when keys are on and the browser's session has no tenant."""


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page: the browser's session and the tenant whose work it shows."""

    session: Session
    tenant: Tenant
    keys_on: bool


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.console_sessions
    return sessions


def keys_on(service: Service) -> bool:
    return bool(service.settings.api_keys or service.settings.admin_api_keys)


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + PREFIX


def browser_session(request: Request) -> Session:
    """The browser's session, a new one (its cookie set by :func:`page`) when it has none."""
    sessions = sessions_of(request)
    session = sessions.get(request.cookies.get(COOKIE))
    if session is None:
        session = sessions.create()
        request.state.new_console_session = session
    return session


def viewer(request: Request, service: Annotated[Service, Depends(get_service)],
           session: Annotated[Session, Depends(browser_session)]) -> Viewer:
    """The viewer of a page: the session's tenant (keys on; else :class:`LoginRequired`), or the anonymous one."""
    if keys_on(service):
        if session.tenant is None:
            raise LoginRequired
        return Viewer(session, session.tenant, True)
    return Viewer(session, Tenant(ANONYMOUS, admin=True), False)


def page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render ``template`` with the console's headers (and the cookie of a session made for this request)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    response = templates.TemplateResponse(request, template, {
        "root": root, "base": _base(request), "static": root + STATIC_PREFIX, **context}, status_code=status_code,
        headers=PAGE_HEADERS)
    created: Session | None = getattr(request.state, "new_console_session", None)
    if created is not None:
        set_session_cookie(request, response, created)
    return response


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path=str(request.scope.get("root_path", "")).rstrip("/") + COOKIE_PATH)


def _redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(_base(request) + path, status_code=303, headers=PAGE_HEADERS)


def login_required(request: Request, exc: Exception) -> Response:
    """Send the browser to the login page (an htmx request is told to go there with ``HX-Redirect``)."""
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={**PAGE_HEADERS, "HX-Redirect": _base(request) + "/login"})
    return _redirect(request, "/login")


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _forbidden(request: Request, viewer_: Viewer | None) -> HTMLResponse:
    return page(request, "message.html", {"viewer": viewer_, "title": "Form expired",
                                          "message": "This form's token is not this session's: reload the page "
                                                     "and send the form again."}, status_code=403)


def _not_found(request: Request, viewer_: Viewer, what: str, job_id: str) -> HTMLResponse:
    return page(request, "message.html", {"viewer": viewer_, "title": "Not found",
                                          "message": f"No {what} has the id {job_id}."}, status_code=404)


# -- login ------------------------------------------------------------------------------------------------------

@router.get("/")
def root(request: Request) -> RedirectResponse:
    """``/`` leads to the console."""
    return RedirectResponse(_base(request), status_code=307)


@router.get(PREFIX + "/login")
def login_page(request: Request, service: Annotated[Service, Depends(get_service)],
               session: Annotated[Session, Depends(browser_session)]) -> Response:
    if not keys_on(service):
        return _redirect(request, "")
    return page(request, "login.html", {"viewer": None, "session": session, "error": None})


@router.post(PREFIX + "/login")
async def login(request: Request, service: Annotated[Service, Depends(get_service)],
                session: Annotated[Session, Depends(browser_session)]) -> Response:
    """Check the key as the API does; on success a new session (a new id: no fixation) holds its tenant."""
    form = await _form(request)
    if not session.accepts(form.get("form_token")):
        return _forbidden(request, None)
    try:
        tenant = require_api_key(service, form.get("api_key") or None)
    except ApiError:
        return page(request, "login.html", {"viewer": None, "session": session,
                                            "error": "This key is not one the server accepts."}, status_code=401)
    sessions = sessions_of(request)
    sessions.drop(session.id)
    fresh = sessions.create(tenant)
    response = _redirect(request, "")
    set_session_cookie(request, response, fresh)
    return response


@router.post(PREFIX + "/logout")
async def logout(request: Request, session: Annotated[Session, Depends(browser_session)]) -> Response:
    form = await _form(request)
    if not session.accepts(form.get("form_token")):
        return _forbidden(request, None)
    sessions_of(request).drop(session.id)
    response = _redirect(request, "/login")
    response.delete_cookie(COOKIE, path=str(request.scope.get("root_path", "")).rstrip("/") + COOKIE_PATH,
                           httponly=True, samesite="strict")
    return response


# -- jobs -------------------------------------------------------------------------------------------------------

def _jobs(service: Service, tenant: Tenant) -> dict[str, Any]:
    store = service.require_store()
    solves, _ = store.list_jobs(kind="solve", limit=JOBS_SHOWN, owner=tenant.sees)
    experiments, _ = store.list_jobs(kind="experiment", limit=JOBS_SHOWN, owner=tenant.sees)
    return {"solves": [job_summary(job) for job in solves], "experiments": [job_summary(job) for job in experiments]}


@router.get(PREFIX)
def jobs_page(request: Request, service: Annotated[Service, Depends(get_service)],
              viewer_: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    return page(request, "jobs.html", {"viewer": viewer_, **_jobs(service, viewer_.tenant), "form": FORM_DEFAULTS,
                                       "error": None, "activations": ACTIVATIONS, "relaxations": RELAXATIONS})


@router.get(PREFIX + "/jobs")
def jobs_fragment(request: Request, service: Annotated[Service, Depends(get_service)],
                  viewer_: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    """The jobs tables alone (htmx polls this every second)."""
    return page(request, "_jobs.html", {"viewer": viewer_, **_jobs(service, viewer_.tenant)})


def _number(text: str) -> Any:
    """A form field as a JSON number when it reads as one (else as sent, for the request model to name)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _refusal(parsed: tuple[Any, ...]) -> str:
    if parsed[0] == "invalid":
        first = parsed[1][0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {first.get('msg', 'is invalid')}"
    return str(parsed[2])


@router.post(PREFIX + "/solves")
async def submit_planted(request: Request, service: Annotated[Service, Depends(get_service)],
                         viewer_: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Queue a planted solve from the form, through the same parsing and checks as ``POST /v1/solves``."""
    form = await _form(request)
    if not viewer_.session.accepts(form.get("form_token")):
        return _forbidden(request, viewer_)
    values = {name: form.get(name, str(default)).strip() for name, default in FORM_DEFAULTS.items()}
    body = {"planted": {name: _number(values[name]) for name in ("n", "d", "k", "seed", "noise_std")},
            "trials": _number(values["trials"]), "relaxation": values["relaxation"],
            "activation": values["activation"]}
    settings = service.settings
    parsed = await run_in_threadpool(parse_json_body, json.dumps(body).encode(), "solve",
                                     settings.max_inline_numbers, settings.max_constraint_numbers)
    error: str | None = None
    if parsed[0] != "ok":
        error = _refusal(parsed)
    else:
        try:
            job, _ = await run_in_threadpool(lambda: service.accept_solve(
                parsed[1], None, owner=viewer_.tenant.owner, sees=viewer_.tenant.sees, idempotency_key=None))
        except ApiError as exc:
            error = exc.detail
        except InvalidParameterError as exc:
            error = f"{exc.parameter}: {exc.message}"
        else:
            return _redirect(request, f"/solves/{job.id}")
    listing = await run_in_threadpool(_jobs, service, viewer_.tenant)
    return page(request, "jobs.html", {"viewer": viewer_, **listing, "form": values, "error": error,
                                       "activations": ACTIVATIONS, "relaxations": RELAXATIONS}, status_code=422)


# -- a solve ----------------------------------------------------------------------------------------------------

def _filter_pictures(result: Any, request_spec: dict[str, Any]) -> list[tuple[Any, str]]:
    """The selected filter as SVG, with a caption: a heat map for a 2-D filter shape (and one of the planted
    ``w*`` beside it, on the same scale), else bars (with ``w*`` as ticks)."""
    if result is None or result.w is None:
        return []
    shape = request_spec.get("filter_shape")
    if shape and len(shape) == 2 and shape[0] * shape[1] == len(result.w):
        rows, columns = int(shape[0]), int(shape[1])
        star = result.w_star if result.w_star is not None and len(result.w_star) == len(result.w) else None
        scale = max(abs(v) for v in [*result.w, *(star or [])])
        pictures = [(svg.heat_map(result.w, rows, columns, scale=scale), f"The selected filter w ({rows} x {columns})")]
        if star is not None:
            pictures.append((svg.heat_map(star, rows, columns, "The planted filter", scale=scale),
                             "The planted filter w*, on the same scale"))
        return pictures
    caption = "Bars: the selected filter w" + ("; black ticks: the planted w*." if result.w_star else ".")
    return [(svg.bars(result.w, result.w_star), caption)]


def _solve_context(service: Service, tenant: Tenant, job_id: str) -> dict[str, Any] | None:
    job: JobRecord | None = service.require_store().get_job(job_id, "solve", owner=tenant.sees)
    if job is None:
        return None
    view = job_view(job)
    return {"job": view, "terminal": view.status in TERMINAL_STATUSES, "request_spec": job.request,
            "pictures": _filter_pictures(view.result, job.request)}


def _job_page(request: Request, viewer_: Viewer, context: dict[str, Any] | None, what: str, job_id: str,
              template: str) -> HTMLResponse:
    """A job's page or fragment from its context, or the console's 404 when the tenant has no such job."""
    if context is None:
        return _not_found(request, viewer_, what, job_id)
    return page(request, template, {"viewer": viewer_, **context})


@router.get(PREFIX + "/solves/{job_id}")
def solve_page(request: Request, job_id: str, service: Annotated[Service, Depends(get_service)],
               viewer_: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    job_id = job_id[:64]
    return _job_page(request, viewer_, _solve_context(service, viewer_.tenant, job_id), "solve job", job_id,
                     "solve.html")


@router.get(PREFIX + "/solves/{job_id}/state")
def solve_fragment(request: Request, job_id: str, service: Annotated[Service, Depends(get_service)],
                   viewer_: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    """The solve's state alone (htmx polls it until the job ends)."""
    job_id = job_id[:64]
    return _job_page(request, viewer_, _solve_context(service, viewer_.tenant, job_id), "solve job", job_id,
                     "_solve.html")


# -- an experiment ----------------------------------------------------------------------------------------------

def _cell_table(result: dict[str, Any] | None) -> tuple[list[str], list[list[Any]]]:
    """The experiment's cells as a table: every member that is a number, a string or a bool."""
    cells = (result or {}).get("cells") or []
    columns: list[str] = []
    for cell in cells:
        for name, value in cell.items():
            if name not in columns and (value is None or isinstance(value, (int, float, str, bool))):
                columns.append(name)
    return columns, [[cell.get(name) for name in columns] for cell in cells]


def _experiment_context(service: Service, tenant: Tenant, job_id: str) -> dict[str, Any] | None:
    job = service.require_store().get_job(job_id, "experiment", owner=tenant.sees)
    if job is None:
        return None
    view = experiment_view(job)
    columns, rows = _cell_table(job.result)
    return {"job": view, "terminal": view.status in TERMINAL_STATUSES, "columns": columns, "rows": rows,
            "has_figure": view.status == JobStatus.succeeded}


@router.get(PREFIX + "/experiments/{job_id}")
def experiment_page(request: Request, job_id: str, service: Annotated[Service, Depends(get_service)],
                    viewer_: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    job_id = job_id[:64]
    return _job_page(request, viewer_, _experiment_context(service, viewer_.tenant, job_id), "experiment", job_id,
                     "experiment.html")


@router.get(PREFIX + "/experiments/{job_id}/state")
def experiment_fragment(request: Request, job_id: str, service: Annotated[Service, Depends(get_service)],
                        viewer_: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    job_id = job_id[:64]
    return _job_page(request, viewer_, _experiment_context(service, viewer_.tenant, job_id), "experiment", job_id,
                     "_experiment.html")


@router.get(PREFIX + "/experiments/{job_id}/figure.png")
def experiment_figure(job_id: str, service: Annotated[Service, Depends(get_service)],
                      viewer_: Annotated[Viewer, Depends(viewer)]) -> Response:
    """The figure of ``GET /v1/experiments/{id}/figure.png``, for the session's tenant (an ``<img>`` sends no key)."""
    from ..experiments import figure_bytes  # the API route's own renderer and cache, scoped the same way

    png = figure_bytes(service, job_id[:64], viewer_.tenant.sees)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


# -- datasets ---------------------------------------------------------------------------------------------------

@router.get(PREFIX + "/datasets")
def datasets_page(request: Request, service: Annotated[Service, Depends(get_service)],
                  viewer_: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    records = service.require_store().list_datasets(owner=viewer_.tenant.sees)
    return page(request, "datasets.html", {"viewer": viewer_, "datasets": [dataset_view(r) for r in records]})


def install_console(app: FastAPI) -> None:
    """Mount the console on ``app``: its routes, its stylesheet, its sessions, and the login redirect."""
    service: Service = app.state.service
    app.state.console_sessions = Sessions(service.settings.console_session_s)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
    app.add_exception_handler(LoginRequired, login_required)
