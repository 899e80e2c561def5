"""The web page in a real browser: Debian's Chromium driven by Playwright, against uvicorn.

Skipped only when /usr/bin/chromium or the playwright package is missing. Set
SUPERRES_SCREENSHOT=path to keep a screenshot of the finished page there.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from superres.apps.web.server import create_app
from superres.engine.inference import Upscaler
from superres.models import create_model

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WORK_SECONDS = 0.4  # each upscale is held this long, so the page's "working" state can be seen


def bicubic_model(scale: int) -> Upscaler:
    """A tiny compact model whose detail branch is zeroed: exactly bicubic, a clean picture."""
    model = create_model("compact", scale, width=8, blocks=1)
    with torch.no_grad():
        model.network.tail.weight.zero_()
        model.network.tail.bias.zero_()
    return Upscaler(model)


UPSCALERS = {scale: bicubic_model(scale) for scale in (2, 4)}


ENSEMBLES_ASKED: list[int] = []  # by the page, as the server saw them


def slow_factory(name: str, scale: int, ensemble: int = 1) -> Upscaler:
    time.sleep(WORK_SECONDS)
    ENSEMBLES_ASKED.append(ensemble)
    if ensemble > 1:
        return Upscaler(UPSCALERS[scale].model, tile=None, ensemble=ensemble)
    return UPSCALERS[scale]


def lister() -> list[dict]:
    return [
        {
            "name": "compact",
            "aliases": ["default"],
            "scale": scale,
            "parameters": u.model.parameters,
        }
        for scale, u in UPSCALERS.items()
    ]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """uvicorn on a free loopback port, in a background thread."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    app = create_app(max_upload_mb=1.0, upscaler_factory=slow_factory, model_lister=lister)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
    listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server_url) -> Iterator[object]:
    """A fresh page on the app; afterwards, checks that it asked nothing of any other host."""
    context = browser.new_context(viewport={"width": 1180, "height": 860})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server_url)
    expect(page.locator("#scale option")).to_have_count(2)
    yield page
    context.close()
    elsewhere = [url for url in requested if not url.startswith((server_url, "blob:", "data:"))]
    assert elsewhere == []


def natural_size(page, selector: str) -> list[int]:
    page.wait_for_function(
        "s => { const img = document.querySelector(s); return img.complete && img.naturalWidth }",
        arg=selector,
    )
    return page.eval_on_selector(selector, "img => [img.naturalWidth, img.naturalHeight]")


def test_upload_compare_and_download(page, tmp_path) -> None:
    path = tmp_path / "portrait.png"
    Image.fromarray(data.astronaut()[40:112, 180:260]).save(path)  # 80x72
    page.select_option("#scale", "2")
    page.set_input_files("#file", str(path))
    expect(page.locator("#file-info")).to_contain_text("portrait.png · 80×72")
    page.click("#run")
    expect(page.locator("#status")).to_have_text("Upscaling…")
    expect(page.locator("#bar")).to_have_class("bar indeterminate")
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#progress")).to_be_hidden()
    assert natural_size(page, "#after") == [160, 144]
    expect(page.locator("#input-size")).to_have_text("80 × 72")
    expect(page.locator("#output-size")).to_have_text("160 × 144")
    expect(page.locator("#used-model")).to_have_text("compact ×2")
    expect(page.locator("#download")).to_have_attribute("download", "portrait-x2.png")

    box = page.locator("#compare").bounding_box()
    middle = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, middle)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 4, middle, steps=5)
    page.mouse.up()
    position = page.eval_on_selector("#compare", "el => el.style.getPropertyValue('--pos')")
    assert float(position.rstrip("%")) == pytest.approx(25, abs=3)
    before = page.eval_on_selector("#before", "img => img.getBoundingClientRect().width")
    assert before == pytest.approx(box["width"], abs=1)  # the input is laid over the result


def test_refusal_is_one_line_on_the_page(page, tmp_path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image at all\n")
    page.set_input_files("#file", str(path))
    page.click("#run")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_have_text(
        "notes.png: not an image, or not a supported format (PNG, JPEG, BMP, TIFF, WEBP, AVIF, "
        "HEIF, JXL)"
    )
    expect(page.locator("#result")).to_be_hidden()
    expect(page.locator("#run")).to_be_enabled()


def test_the_page_refuses_an_oversized_file_itself(page, tmp_path) -> None:
    """The page checks /api/limits first (the server's own refusal reads differently)."""
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(1_200_000))  # the server under test takes at most 1 MB
    page.set_input_files("#file", str(path))
    expect(page.locator("#error")).to_have_text("huge.png is 1.2 MB, over the limit of 1.0 MB.")


def test_sample_runs_at_the_default_scale(page, tmp_path) -> None:
    page.click("#sample")
    expect(page.locator("#result")).to_be_visible()
    assert natural_size(page, "#after") == [512, 512]  # the 128x128 sample at x4
    slider = page.locator("#slider")
    slider.focus()
    for _ in range(30):  # the keyboard moves the split too
        slider.press("ArrowLeft")
    expect(page.locator("#model-info")).to_contain_text("megapixels/s measured here")
    shot = Path(os.environ.get("SUPERRES_SCREENSHOT") or tmp_path / "web-page.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert np.asarray(Image.open(shot)).std() > 0


def test_the_self_ensemble_menu_reaches_the_server(page, tmp_path) -> None:
    path = tmp_path / "portrait.png"
    Image.fromarray(data.astronaut()[40:112, 180:260]).save(path)
    page.select_option("#scale", "2")
    page.select_option("#ensemble", "4")
    page.set_input_files("#file", str(path))
    ENSEMBLES_ASKED.clear()
    page.click("#run")
    expect(page.locator("#result")).to_be_visible()
    assert natural_size(page, "#after") == [160, 144]
    assert ENSEMBLES_ASKED == [4]
