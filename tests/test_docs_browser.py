"""``/docs`` and ``/redoc`` in a real headless browser, with every request off the loopback refused.

The browser is Debian's ``chromium`` driven by Playwright (``pip install playwright``, a test extra; never
``playwright install``, which downloads a browser build). When ``/usr/bin/chromium`` is missing, this
module's set-up installs it with ``apt-get install -y chromium`` (root only); when that is not possible, the
tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from conftest import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("CNNRELAX_CHROMIUM", "/usr/bin/chromium"))
#: Requests off the server a page may try, each harmless when refused: ReDoc 2's footer logo (an ``<img>``
#: that hides itself when it cannot load; the bundle has no option to leave it out).
COSMETIC = {"https://cdn.redoc.ly/redoc/logo-mini.svg"}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _install_chromium() -> str | None:
    """Install Debian's chromium if it is missing; ``None`` on success, else why it could not be."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and there is no apt-get to install it"
    if os.geteuid() != 0:
        return f"{CHROMIUM} is missing; install it as root: apt-get install -y chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "-q", "chromium"],
                    ["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode == 0 and CHROMIUM.exists():
            return None
    return f"apt-get install -y chromium failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the test extra installs it
        pytest.skip(f"playwright is not installed ({exc}); pip install playwright")
    reason = _install_chromium()
    if reason is not None:
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


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
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and message.location.get("url") not in COSMETIC else None)
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
    assert set(refused) <= COSMETIC, f"the page tried to load {refused}"
    assert errors == []
    page.context.close()
