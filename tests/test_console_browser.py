"""The console in a real browser (Playwright driving Debian's chromium), keys on, two tenants.

One server with API keys ``A`` and ``B``; each tenant logs in from its own browser context (its own cookies).
Every request the pages make is routed through a recorder: any request to another host fails the test (and is
aborted), and so does any console error or uncaught page error (a Content-Security-Policy violation is one).
What is checked: ``/`` leads to a login with a password field; a wrong key is refused; a job submitted through
the API appears in the jobs list and reaches ``succeeded`` without the page being reloaded; B sees none of A's
jobs or datasets and A's job page is a 404 for B; a planted solve submitted by the form finishes, and its page
shows the certificate in words, the filter as SVG bars (heat map for a 2-D filter) and the trials' table; an
experiment's page shows its figure and its cells; a form without its session's token is refused; logging out
ends the session.

Set ``CNNRELAX_SCREENSHOT_DIR`` to keep screenshots of the solve and experiment pages there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from conftest import ServerProcess

KEY_A, KEY_B = "console-key-a", "console-key-b"
PLANTED_1D = {"planted": {"n": 120, "d": 8, "k": 2, "seed": 3}, "trials": 4}
#: A planted 2-D problem: 6x6 images, a 3x3 filter with stride 3 (four patches).
PLANTED_2D = {"planted": {"n": 150, "d": 36, "k": 4, "seed": 1}, "image_shape": [6, 6], "filter_shape": [3, 3],
              "stride": 3, "trials": 4}
PHASE = {"kind": "phase_transition", "k": 1, "d": [4], "n": [8, 24], "repetitions": 2, "trials": 2,
         "methods": ["relaxation"]}
TIMEOUT_MS = 60_000


@dataclass
class Tab:
    """A tenant's browser context and page, and what the page did: hosts asked, errors, navigations."""

    page: Any
    hosts: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)
    #: (console message, page URL) of the pages answered with a 4xx on purpose (chromium logs each).
    expected_errors: set[tuple[str, str]] = field(default_factory=set)

    def clean(self) -> None:
        """No request to another host, no console or page error (other than those of expected 4xx pages)."""
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"
        errors = [error for error in self.errors if not any(error == f"{expected} at {url}"
                                                            for expected, url in self.expected_errors)]
        assert errors == [], errors


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("console"), workers=1,
                           env={"CNNRELAX_API_KEYS": f"{KEY_A},{KEY_B}", "CNNRELAX_LOG_LEVEL": "warning"}).start()
    yield server
    server.stop()


def _tab(browser: Any, server: ServerProcess) -> Iterator[Tab]:
    context = browser.new_context()
    page = context.new_page()
    tab = Tab(page)
    host = urlparse(server.url).netloc

    def route(route: Any) -> None:
        url = route.request.url
        tab.hosts.append(urlparse(url).netloc or url.split(":", 1)[0])
        if urlparse(url).netloc == host or url.startswith("data:"):
            route.continue_()
        else:
            tab.foreign.append(url)
            route.abort()

    context.route("**/*", route)
    page.on("console", lambda message: tab.errors.append(f"{message.text} at {message.location.get('url')}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: tab.errors.append(f"page error: {error}"))
    page.on("framenavigated", lambda frame: tab.navigations.append(frame.url) if frame == page.main_frame else None)
    yield tab
    context.close()


@pytest.fixture(scope="module")
def tab_a(browser: Any, keyed_server: ServerProcess) -> Iterator[Tab]:
    yield from _tab(browser, keyed_server)


@pytest.fixture(scope="module")
def tab_b(browser: Any, keyed_server: ServerProcess) -> Iterator[Tab]:
    yield from _tab(browser, keyed_server)


def _api(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60)


def _login(tab: Tab, server: ServerProcess, key: str) -> None:
    answer = tab.page.goto(server.url + "/")
    assert answer is not None and answer.ok
    assert tab.page.url == f"{server.url}/console/login"
    tab.page.fill("input[type=password][name=api_key]", key)
    tab.page.click("form.login button[type=submit]")
    tab.page.wait_for_url(f"{server.url}/console", timeout=TIMEOUT_MS)
    assert tab.page.locator("#jobs").count() == 1


def _failed(status: int) -> str:
    """What chromium logs for a page answered with ``status``."""
    return f"Failed to load resource: the server responded with a status of {status} ({HTTPStatus(status).phrase})"


def _screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    where = Path(os.environ.get("CNNRELAX_SCREENSHOT_DIR") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    path = where / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a page, not a blank
    return path


def test_root_asks_for_a_key_and_refuses_a_wrong_one(tab_a: Tab, keyed_server: ServerProcess) -> None:
    page = tab_a.page
    page.goto(keyed_server.url + "/")
    assert page.url == f"{keyed_server.url}/console/login"
    field_ = page.locator("input[name=api_key]")
    assert field_.get_attribute("type") == "password"
    page.fill("input[name=api_key]", "not-a-key")
    page.click("form.login button[type=submit]")
    assert "not one the server accepts" in page.locator(".error").inner_text()
    tab_a.expected_errors.add((_failed(401), f"{keyed_server.url}/console/login"))
    assert "not-a-key" not in page.url and "console-key" not in page.url
    _login(tab_a, keyed_server, KEY_A)
    headers = page.request.get(f"{keyed_server.url}/console").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    cookie = next(c for c in page.context.cookies() if c["name"] == "cnnrelax_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert KEY_A not in cookie["value"]
    tab_a.clean()


def test_the_jobs_list_updates_live(tab_a: Tab, keyed_server: ServerProcess, tmp_path: Path) -> None:
    page = tab_a.page
    page.goto(f"{keyed_server.url}/console")
    loads = len(tab_a.navigations)
    with _api(keyed_server, KEY_A) as api:
        job_id = api.post("/v1/solves", json=PLANTED_1D).json()["id"]
    row = page.locator(f"#job-{job_id}")
    row.wait_for(timeout=TIMEOUT_MS)  # the new job appears without a reload ...
    page.wait_for_selector(f"#job-{job_id}[data-status=succeeded]", timeout=TIMEOUT_MS)  # ... and finishes
    assert row.locator(".status").inner_text() == "succeeded"
    assert len(tab_a.navigations) == loads, f"the page was reloaded: {tab_a.navigations[loads:]}"
    _screenshot(page, "console-jobs.png", tmp_path)
    tab_a.clean()


def test_a_tenant_sees_only_its_own_work(tab_a: Tab, tab_b: Tab, keyed_server: ServerProcess) -> None:
    with _api(keyed_server, KEY_A) as api:
        job_a = api.post("/v1/solves", json=PLANTED_1D).json()["id"]
        dataset_a = api.post("/v1/datasets", json={"X": [[1.0, 2.0], [3.0, 1.0]], "y": [1.0, 2.0]}).json()["id"]
    _login(tab_b, keyed_server, KEY_B)
    page_b = tab_b.page
    page_b.wait_for_timeout(1500)  # a poll or two of the jobs list
    assert job_a not in page_b.content()
    answer = page_b.goto(f"{keyed_server.url}/console/solves/{job_a}")
    assert answer is not None and answer.status == 404
    tab_b.expected_errors.add((_failed(404), f"{keyed_server.url}/console/solves/{job_a}"))
    assert job_a not in page_b.locator("main").inner_text().replace(f"No solve job has the id {job_a}", "")
    figure = page_b.request.get(f"{keyed_server.url}/console/solves/{job_a}/state")
    assert figure.status == 404
    page_b.goto(f"{keyed_server.url}/console/datasets")
    assert dataset_a not in page_b.content()
    tab_a.page.goto(f"{keyed_server.url}/console")
    tab_a.page.locator(f"#job-{job_a}").wait_for(timeout=TIMEOUT_MS)
    tab_a.page.goto(f"{keyed_server.url}/console/datasets")
    assert dataset_a in tab_a.page.content()
    tab_a.clean()
    tab_b.clean()


def test_a_planted_solve_submitted_by_the_form_finishes(tab_a: Tab, keyed_server: ServerProcess,
                                                       tmp_path: Path) -> None:
    page = tab_a.page
    page.goto(f"{keyed_server.url}/console")
    page.fill("#planted-form input[name=n]", "0")  # refused with the API's sentence, naming the member
    page.click("#planted-form button[type=submit]")
    assert "planted.n" in page.locator(".error").inner_text()
    tab_a.expected_errors.add((_failed(422), f"{keyed_server.url}/console/solves"))
    for name, value in (("n", "200"), ("d", "10"), ("k", "1"), ("seed", "4"), ("trials", "6")):
        page.fill(f"#planted-form input[name={name}]", value)
    page.click("#planted-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/solves/[0-9a-f]+$"), timeout=TIMEOUT_MS)
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#solve-state[data-status=succeeded]", timeout=TIMEOUT_MS)
    with _api(keyed_server, KEY_A) as api:
        job = api.get(f"/v1/solves/{job_id}").json()
    result = job["result"]
    assert result["shape"] == {"n": 200, "d": 10, "k": 1, "m": 10}  # what the form said
    certificate = page.locator("#certificate").inner_text()
    assert result["certificate"]["summary"] in certificate
    assert ("Global optimum of the non-convex loss: yes" in certificate) == result["certificate"]["global_optimum"]
    bars = page.locator("#filter-picture svg.bars rect.bar")
    assert bars.count() == len(result["w"]) == 10
    assert page.locator("#filter-picture svg line.w-star").count() == 10  # the planted filter, as ticks
    rows = page.locator("#trials tbody tr")
    assert rows.count() == len(result["trials"])
    selected = page.locator("#trials tbody tr.selected td").all_inner_texts()
    trial = result["trials"][result["selected_trial"]]
    assert selected[3] == f"{trial['loss']:.3g}"
    shot = _screenshot(page, "console-solve.png", tmp_path)
    print(f"screenshot: {shot}")
    tab_a.clean()


def test_a_2d_filter_is_a_heat_map_and_an_experiment_shows_its_figure(tab_a: Tab, keyed_server: ServerProcess,
                                                                       tmp_path: Path) -> None:
    with _api(keyed_server, KEY_A) as api:
        solve = api.post("/v1/solves", json=PLANTED_2D)
        assert solve.status_code == 202, solve.text
        experiment = api.post("/v1/experiments", json=PHASE)
        assert experiment.status_code == 202, experiment.text
        done = api.get(f"/v1/solves/{solve.json()['id']}", params={"wait": 30}).json()
        finished = api.get(f"/v1/experiments/{experiment.json()['id']}", params={"wait": 30}).json()
    assert done["status"] == "succeeded" and finished["status"] == "succeeded", (done, finished)
    page = tab_a.page
    page.goto(f"{keyed_server.url}/console/solves/{done['id']}")
    maps = page.locator("#filter-picture svg.heat-map")
    assert maps.count() == 2  # the selected filter, and the planted one beside it
    for picture, w in zip(maps.all(), (done["result"]["w"], done["result"]["w_star"]), strict=True):
        fills = picture.locator("rect.cell").evaluate_all("cells => cells.map(c => c.getAttribute('fill'))")
        assert len(fills) == len(w) == 9  # the 3x3 filter, row-major: red > 0, blue < 0, darkest at max |w|
        for value, fill in zip(w, fills, strict=True):
            red, blue = int(fill[1:3], 16), int(fill[5:7], 16)
            assert abs(value) < 1e-9 * max(map(abs, w)) or (red > blue) == (value > 0), (value, fill)
    _screenshot(page, "console-heat-map.png", tmp_path)
    page.goto(f"{keyed_server.url}/console/experiments/{finished['id']}")
    image = page.locator("#experiment-figure")
    image.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('#experiment-figure').complete", timeout=TIMEOUT_MS)
    assert image.evaluate("img => img.naturalWidth") > 100
    assert page.locator("#cells tbody tr").count() == len(finished["result"]["cells"])
    _screenshot(page, "console-experiment.png", tmp_path)
    tab_a.clean()


def test_a_form_without_its_token_is_refused_and_logout_ends_the_session(tab_a: Tab,
                                                                          keyed_server: ServerProcess) -> None:
    page = tab_a.page
    with _api(keyed_server, KEY_A) as api:
        before = len(api.get("/v1/solves").json()["items"])
        forged = page.request.post(f"{keyed_server.url}/console/solves",
                                   form={"n": "50", "d": "4", "k": "1", "seed": "0", "trials": "1",
                                         "form_token": "forged"})
        assert forged.status == 403
        assert len(api.get("/v1/solves").json()["items"]) == before
    page.goto(f"{keyed_server.url}/console")
    page.click("form.logout button[type=submit]")
    page.wait_for_url(f"{keyed_server.url}/console/login", timeout=TIMEOUT_MS)
    page.goto(f"{keyed_server.url}/console/datasets")
    assert page.url == f"{keyed_server.url}/console/login"
    tab_a.clean()
    assert set(tab_a.hosts) == {urlparse(keyed_server.url).netloc}  # every request went to the server alone
