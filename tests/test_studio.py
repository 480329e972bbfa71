"""The web studio in headless Chromium through Playwright: submit prompts, watch progress, play the
results, delete one, take a screenshot. Uses the system's Chromium (Debian's `chromium` package);
nothing is downloaded, and the test is skipped where no Chromium is installed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serving import Server, http, make_model_dir

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="no Chromium installed (Debian: apt-get install chromium)")
# headless, and quiet on a machine without a network: no background fetches, no first-run work
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = make_model_dir(tmp_path_factory.mktemp("models") / "tiny")
    srv = Server(model, tmp_path_factory.mktemp("studio") / "data")
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture()
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelector('#size').options.length > 0")
        yield page
        browser.close()
        assert not errors, errors


def submit(page, prompt: str, size: str, seconds: str, steps: str = "") -> None:
    page.fill("#prompt", prompt)
    page.select_option("#size", size)
    page.select_option("#seconds", seconds)
    page.fill("#steps", steps)
    page.click("#submit")


def test_studio_submits_shows_progress_and_plays(page, server, tmp_path):
    assert "framecast-tiny" in page.text_content("#model")
    assert page.is_disabled("#image")  # image-to-video: not supported by the model yet
    page.click("details summary")
    submit(page, "a slow red ball falls and bounces", "64x64", "4", steps="300")
    page.wait_for_function("""() => { const c = document.querySelector('.card');
        return c && c.dataset.status === 'in_progress' && c.querySelector('progress').value > 0 }""", timeout=WAIT_MS)
    assert "rendering" in page.text_content(".card .status")
    submit(page, "a blue box slides to the right", "32x32", "1")
    page.wait_for_function("""() => { const v = [...document.querySelectorAll('.card video')];
        return v.length === 2 && v.every(e => !e.hidden && e.readyState >= 2 && e.duration > 0) }""", timeout=WAIT_MS)
    cards = page.locator(".card")
    assert cards.nth(0).locator(".prompt").text_content() == "a blue box slides to the right"  # newest first
    durations = page.eval_on_selector_all(".card video", "vs => vs.map(v => v.duration)")
    assert durations == [pytest.approx(1, abs=0.2), pytest.approx(4, abs=0.2)]
    assert cards.nth(0).locator(".download").get_attribute("download").endswith(".mp4")
    shot = Path(os.environ.get("FRAMECAST_STUDIO_SCREENSHOT", tmp_path / "studio.png"))
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # a remix from its card, then a delete
    cards.nth(0).locator(".remix input").fill("a green box slides to the right")
    cards.nth(0).locator(".remix button").click()
    page.wait_for_function("document.querySelectorAll('.card').length === 3", timeout=WAIT_MS)
    assert "remix" in cards.nth(0).locator(".meta").text_content()
    cards.nth(2).locator(".delete").click()
    page.wait_for_function("document.querySelectorAll('.card').length === 2", timeout=WAIT_MS)
    listed = http("GET", server.url + "/v1/videos")[1]["data"]
    assert [v["prompt"] for v in listed] == ["a green box slides to the right", "a blue box slides to the right"]


def test_studio_shows_the_servers_error(page):
    page.fill("#prompt", "   ")  # passes the form's `required`, refused by the API
    page.click("#submit")
    page.wait_for_selector("#form-error:not([hidden])")
    assert "prompt is required" in page.text_content("#form-error")
