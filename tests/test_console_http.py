"""The console over plain HTTP with keys off (the anonymous tenant, as the API): no login, forms still need the
session's token, every page carries the Content-Security-Policy, and what a URL carries is escaped."""

from __future__ import annotations

import re

import httpx

from conftest import ServerProcess, wait_job


def _token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def test_keys_off_the_console_needs_no_login_but_forms_need_their_token(live_server: ServerProcess) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as browser:
        root = browser.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/console"
        jobs = browser.get("/console")
        assert jobs.status_code == 200 and "text/html" in jobs.headers["content-type"]
        policy = jobs.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy and "unsafe" not in policy
        assert jobs.headers["x-frame-options"] == "DENY"
        cookie = jobs.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert browser.get("/console/login").headers["location"] == "/console"  # nothing to log into
        form = {"n": "80", "d": "4", "k": "1", "seed": "2", "noise_std": "0", "trials": "2", "relaxation": "lp",
                "activation": "relu"}
        forged = browser.post("/console/solves", data={**form, "form_token": "x" * 43})
        assert forged.status_code == 403 and "Content-Security-Policy" in forged.headers
        with httpx.Client(base_url=live_server.url, timeout=60) as stranger:  # another browser: another session
            stranger.get("/console")
            assert stranger.post("/console/solves", data={**form, "form_token": _token(jobs.text)}).status_code == 403
        sent = browser.post("/console/solves", data={**form, "form_token": _token(jobs.text)})
        assert sent.status_code == 303
        location = sent.headers["location"]
        assert re.fullmatch(r"/console/solves/[0-9a-f]{32}", location)
        job = wait_job(browser, "/v1/solves/" + location.rsplit("/", 1)[1])
        assert job["status"] == "succeeded" and job["result"]["shape"] == {"n": 80, "d": 4, "k": 1, "m": 4}
        page = browser.get(location)
        assert page.status_code == 200 and "The certificate in words" in page.text


def test_what_a_url_carries_is_escaped(live_server: ServerProcess) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as browser:
        answer = browser.get("/console/solves/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
        assert answer.status_code == 404 and "text/html" in answer.headers["content-type"]
        assert "<img src=x" not in answer.text and "&lt;img src=x onerror=alert(1)&gt;" in answer.text
