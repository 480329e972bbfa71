"""The web studio in headless Chromium through Playwright: submit prompts (one with an image), watch
progress, play the results and see their provenance, delete one, take a screenshot. Uses the
system's Chromium (Debian's `chromium` package); nothing is downloaded, and the test is skipped
where no Chromium is installed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
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


def submit(page, prompt: str, size: str, seconds: str, steps: str = "", image: Path | None = None) -> None:
    page.fill("#prompt", prompt)
    page.select_option("#size", size)
    page.select_option("#seconds", seconds)
    page.fill("#steps", steps)
    if image:
        page.set_input_files("#image", str(image))
    page.click("#submit")


def test_studio_submits_shows_progress_and_plays(page, server, tmp_path):
    assert "framecast-tiny" in page.text_content("#model")
    page.click("details summary")
    submit(page, "a slow red ball falls and bounces", "64x64", "4", steps="300")
    page.wait_for_function("""() => { const c = document.querySelector('.card');
        return c && c.dataset.status === 'in_progress' && c.querySelector('progress').value > 0 }""", timeout=WAIT_MS)
    assert "rendering" in page.text_content(".card .status")
    image = tmp_path / "start.png"
    Image.new("RGB", (40, 40), (200, 40, 40)).save(image)
    submit(page, "a blue box slides to the right", "32x32", "1", image=image)  # image-to-video
    page.wait_for_function("document.querySelectorAll('.card').length === 2", timeout=WAIT_MS)
    assert page.input_value("#image") == ""  # the form is cleared for the next video
    page.wait_for_function("""() => { const v = [...document.querySelectorAll('.card video')];
        return v.length === 2 && v.every(e => !e.hidden && e.readyState >= 2 && e.duration > 0) }""", timeout=WAIT_MS)
    cards = page.locator(".card")
    assert cards.nth(0).locator(".prompt").text_content() == "a blue box slides to the right"  # newest first
    durations = page.eval_on_selector_all(".card video", "vs => vs.map(v => v.duration)")
    assert durations == [pytest.approx(1, abs=0.2), pytest.approx(4, abs=0.2)]
    assert cards.nth(0).locator(".download").get_attribute("download").endswith(".mp4")
    badges = page.locator(".card .provenance")
    assert badges.nth(0).text_content() == "\u2713 C2PA credentials \u00b7 \u2713 watermark"
    assert badges.nth(0).get_attribute("data-ok") == "true"
    assert "made by framecast" in badges.nth(0).get_attribute("title")  # verify's verdict, on hover
    first = page.eval_on_selector(".card video", """v => { const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight; v.pause(); v.currentTime = 0;
        return new Promise(r => v.addEventListener('seeked', () => { c.getContext('2d').drawImage(v, 0, 0);
            r([...c.getContext('2d').getImageData(16, 16, 1, 1).data].slice(0, 3)) }, { once: true })) }""")
    assert abs(first[0] - 200) < 30 and abs(first[1] - 40) < 30, first  # the video starts with the image
    shot = Path(os.environ.get("FRAMECAST_STUDIO_SCREENSHOT", tmp_path / "studio.png"))
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # a remix, an edit and an extension from a card, then a delete
    def follow(card, action: str, prompt: str, count: int) -> None:
        form = card.locator(".follow")
        form.locator("select[name=action]").select_option(action)
        form.locator("input").fill(prompt)
        assert form.locator("button").text_content() == action.capitalize()
        assert form.locator("select[name=seconds]").is_visible() == (action == "extend")
        form.locator("button").click()
        page.wait_for_function(f"document.querySelectorAll('.card').length === {count}", timeout=WAIT_MS)

    follow(cards.nth(0), "remix", "a green box slides to the right", 3)
    assert "from an earlier video" in cards.nth(0).locator(".meta").text_content()
    follow(cards.nth(2), "edit", "a slow green ball falls and bounces", 4)  # the 4 s red ball, recoloured
    follow(cards.nth(2), "extend", "the blue box keeps sliding", 5)  # the 1 s image-to-video clip, +2 s
    page.wait_for_function("""() => { const v = [...document.querySelectorAll('.card video')];
        return v.length === 5 && v.every(e => !e.hidden && e.readyState >= 2 && e.duration > 0) }""", timeout=WAIT_MS)
    durations = page.eval_on_selector_all(".card video", "vs => vs.map(v => v.duration)")
    assert durations[:2] == [pytest.approx(3, abs=0.2), pytest.approx(4, abs=0.2)]  # the extension, the edit
    listed = http("GET", server.url + "/v1/videos")[1]["data"]
    assert [v["prompt"] for v in listed[:2]] == ["the blue box keeps sliding", "a slow green ball falls and bounces"]
    cards.nth(4).locator(".delete").click()
    page.wait_for_function("document.querySelectorAll('.card').length === 4", timeout=WAIT_MS)
    listed = http("GET", server.url + "/v1/videos")[1]["data"]
    assert "a slow red ball falls and bounces" not in [v["prompt"] for v in listed]


def test_studio_shows_the_servers_error(page):
    page.fill("#prompt", "   ")  # passes the form's `required`, refused by the API
    page.click("#submit")
    page.wait_for_selector("#form-error:not([hidden])")
    assert "prompt is required" in page.text_content("#form-error")
