"""``/docs`` and ``/redoc`` in a real headless browser, with every request off the loopback refused.

The browser is Debian's ``chromium`` driven by Playwright (the ``browser`` fixture of ``conftest.py``: when
``/usr/bin/chromium`` is missing it is installed with ``apt-get install -y chromium`` as root; when that is not
possible, the tests skip and say why). Neither page may ask another host for anything (ReDoc's footer logo
included), nor log an error; Swagger UI's "Try it out" sends its default body for ``POST /v1/solves`` and the
server accepts it as it comes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from conftest import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def _offline_page(browser: Any, server: ServerProcess) -> tuple[Any, list[str], list[str]]:
    """A page that may only reach the server: other requests are aborted and recorded; errors recorded too."""
    context = browser.new_context()
    page = context.new_page()
    refused: list[str] = []
    errors: list[str] = []
    host = urlparse(server.url).netloc

    def route(route: Any) -> None:
        url = route.request.url
        if urlparse(url).netloc == host or url.startswith("data:") or url.startswith("blob:"):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("requestfailed", lambda request: errors.append(f"{request.url}: {request.failure}")
            if urlparse(request.url).netloc == host else None)
    return page, refused, errors


def _operations() -> set[tuple[str, str]]:
    schema = json.loads((ROOT / "openapi.json").read_text())
    return {(method.upper(), path) for path, item in schema["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


def test_swagger_ui_lists_every_operation_offline(browser: Any, live_server: ServerProcess) -> None:
    page, refused, errors = _offline_page(browser, live_server)
    answer = page.goto(f"{live_server.url}/docs")
    assert answer is not None and answer.status == 200
    page.wait_for_selector(".opblock-summary", timeout=30_000)
    shown = set()
    for block in page.query_selector_all(".opblock-summary"):
        method = block.query_selector(".opblock-summary-method").inner_text().strip().upper()
        path = block.query_selector(".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path))
    assert shown == _operations()
    assert "Submit a solve" in page.content()
    assert refused == [], f"the page tried to load {refused}"
    assert errors == []
    page.context.close()


def test_redoc_lists_the_operations_offline(browser: Any, live_server: ServerProcess) -> None:
    page, refused, errors = _offline_page(browser, live_server)
    answer = page.goto(f"{live_server.url}/redoc")
    assert answer is not None and answer.status == 200
    page.get_by_text("Submit a solve").first.wait_for(state="attached", timeout=30_000)
    text = page.inner_text("body")
    for summary in ("Submit a solve", "Get a solve job", "Upload a dataset", "Liveness"):
        assert summary in text
    assert refused == [], f"the page tried to load {refused}"
    assert errors == []
    page.context.close()


def test_swagger_try_it_out_submits_the_default_body(browser: Any, live_server: ServerProcess) -> None:
    """The body "Try it out" fills in for ``POST /v1/solves`` is accepted as it comes (202), and the job runs."""
    page, refused, errors = _offline_page(browser, live_server)
    page.goto(f"{live_server.url}/docs")
    block = page.locator("#operations-solves-submit_solve")
    block.wait_for(timeout=30_000)
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    body = json.loads(block.locator("textarea.body-param__text").input_value())
    assert set(body) & {"data", "dataset_id", "planted"} == {"planted"}, body
    block.locator(".execute").click()
    status = block.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "202", block.locator(".live-responses-table").inner_text()
    answer = json.loads(block.locator(".live-responses-table tbody .response-col_description .microlight").first
                        .inner_text())
    job = httpx.get(f"{live_server.url}/v1/solves/{answer['id']}", params={"wait": 20}, timeout=60).json()
    assert job["status"] == "succeeded", job
    assert refused == [] and errors == [], (refused, errors)
    page.context.close()
