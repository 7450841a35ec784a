"""End to end in a real browser: Playwright drives Debian's Chromium against ``streamlit run`` on localhost.

Open the app, choose a layer, move its rank slider and watch FLOPs and top-1 change, put it into the
plan, export the plan as YAML and check that the downloaded file loads and applies, and that the downloaded
compressed model opens and computes what the applied plan computes. Then run a small sensitivity sweep and
let an allocator fill the plan from it, and open the real pretrained imagenet-mobilenetv2. Every page is
screenshotted into the test's folder and copied to /tmp/rankscope-shots/. The server runs in a fresh folder,
so its sweep cache starts empty.
Last, a super-resolution model's Images page: four image panels drawn, none of them blank.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.models import create_model
from core.plan import apply_plan, load_plan
from core.uploads import store_upload

from tests.dashboard.helpers import APP, SAMPLES

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path("/tmp/rankscope-shots")
ROOT = Path(APP).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``streamlit run dashboard/app.py`` on a free localhost port; killed at the end."""
    port = _free_port()
    folder = tmp_path_factory.mktemp("server")  # the server's working folder: its sweep cache starts empty
    (folder / ".streamlit").symlink_to(ROOT / ".streamlit")  # the repository's settings
    log = folder / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", APP, "--server.address", "127.0.0.1", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=folder, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not come up on {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser test needs Debian's Chromium at {CHROMIUM}: install it with `make browser` "
                    "(apt-get install chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _idle(page, timeout: float = 180) -> None:
    """Wait until the app has finished running its script (no running-status widget for a second)."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return
        page.wait_for_timeout(200)
    raise AssertionError("the app kept running for more than the timeout")


def _metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True))
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _wait_change(page, label: str, before: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _idle(page)
        now = _metric(page, label)
        if now != before:
            return now
        page.wait_for_timeout(300)
    raise AssertionError(f"{label} stayed at {before}")


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)


def _go(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    _idle(page)


def _open(browser, server: str):
    """A new session on the Model page, evaluating on ``SAMPLES`` images."""
    page = browser.new_page(viewport={"width": 1500, "height": 2600}, accept_downloads=True)
    page.set_default_timeout(120_000)
    page.goto(server)
    page.get_by_role("heading", name="Model").first.wait_for()
    _idle(page)
    samples = page.get_by_label("Evaluation images", exact=True).and_(page.locator("input"))
    samples.fill(str(SAMPLES))
    samples.press("Enter")
    _idle(page)
    return page


def _slider(page, label: str):
    return page.get_by_role("slider", name=label)


def test_choose_layer_move_rank_export_and_apply(server, browser, tmp_path):
    page = _open(browser, server)
    assert _metric(page, "Parameters") == "77.75 k"
    _shot(page, tmp_path, "1-model")

    _go(page, "Layer explorer")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Layer (type to search)").locator("input").fill("layer3.0.conv2")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="layer3.0.conv2 with tucker2 at rank 32x32").wait_for()
    _idle(page)
    flops, accuracy = _metric(page, "Layer FLOPs / sample"), _metric(page, "Model top-1 (only this layer changed)")
    slider = page.get_by_role("slider").first
    slider.focus()
    page.keyboard.press("Home")  # input rank 1
    page.get_by_role("heading", name="layer3.0.conv2 with tucker2 at rank 1x32").wait_for()
    assert _wait_change(page, "Layer FLOPs / sample", flops) != flops
    assert _wait_change(page, "Model top-1 (only this layer changed)", accuracy) != accuracy
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.get_by_role("heading", name="layer3.0.conv2 with tucker2 at rank 4x32").wait_for()
    _idle(page)
    assert page.locator(".js-plotly-plot .bars path").count() > 10, "the spectrum chart has no bars"
    _shot(page, tmp_path, "2-layer-explorer")
    page.get_by_role("button", name="Put this layer's choice into the plan").click()
    _idle(page)

    _go(page, "Plan")
    assert "% of baseline" in page.locator('[data-testid="stMetric"]').first.inner_text()
    assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 1, "the trade-off chart has no point"
    _shot(page, tmp_path, "3-plan")

    _go(page, "Export")
    with page.expect_download() as download:
        page.get_by_role("button", name="Plan as YAML").click()
    target = tmp_path / download.value.suggested_filename
    download.value.save_as(target)
    with page.expect_download() as zipped:
        page.get_by_role("button", name="Compressed model (.zip)").click()
    archive = tmp_path / zipped.value.suggested_filename
    zipped.value.save_as(archive)
    _shot(page, tmp_path, "4-export")
    page.close()

    plan = load_plan(target)
    assert plan.model == "fmnist-resnet"
    assert plan.layers["layer3.0.conv2"].method == "tucker2" and plan.layers["layer3.0.conv2"].rank == (4, 32)
    model, _ = create_model("fmnist-resnet")
    compressed, report = apply_plan(model, plan)
    assert report.applied["layer3.0.conv2"] == "tucker2 rank 4x32"
    assert type(compressed.get_submodule("layer3.0.conv2")).__name__ == "Decomposed"
    reopened, _ = create_model(f"file:{store_upload(archive.read_bytes(), archive.name, root=tmp_path)}")
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(reopened(x), compressed(x))  # the downloaded model is the plan applied


def test_sensitivity_sweep_then_auto_fill(server, browser, tmp_path):
    page = _open(browser, server)
    _go(page, "Sensitivity")
    page.get_by_text("Not swept yet").wait_for()
    layers = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Layers").locator("input")
    for name in ("layer3.0.conv2", "fc"):  # two late layers: a small sweep
        layers.fill(name)
        page.keyboard.press("Enter")
        _idle(page)
    page.keyboard.press("Escape")  # close the options: while open, the rest of the page is hidden from get_by_role
    _slider(page, "Ranks per layer").focus()
    page.keyboard.press("Home")  # 2 ranks ...
    page.keyboard.press("ArrowRight")  # ... 3
    _idle(page)
    page.get_by_role("button", name="Run exact sweep").click()
    page.get_by_text("Top-1 drop when only this layer is compressed").wait_for()
    _idle(page)
    assert page.get_by_text("6 points, read from the sweep cache").count() == 1  # 2 layers x 3 ranks
    assert page.locator(".js-plotly-plot .heatmaplayer").count() == 1, "no heat-map drawn"
    _shot(page, tmp_path, "5-sensitivity")

    _go(page, "Plan")
    flops = _metric(page, "FLOPs / sample")
    page.get_by_text("Auto: fill the plan to a budget with an allocator").click()
    page.locator('[data-testid="stRadio"]').filter(has_text="Budget on").get_by_text("parameters", exact=True).click()
    _idle(page)
    _slider(page, "Keep at most").focus()
    for _ in range(4):  # 50 % -> 70 % of the parameters: within reach of the two swept layers
        page.keyboard.press("ArrowRight")
    _idle(page)
    allocator = page.locator('[data-testid="stSelectbox"]').filter(has_text="Allocator")
    allocator.locator("input").click()  # the sweep's allocator (the default, whitened, needs no sweep)
    page.get_by_role("option", name="rankscope", exact=True).click()
    _idle(page)
    page.get_by_role("button", name="Fill the plan").click()
    assert _wait_change(page, "FLOPs / sample", flops) != flops
    page.get_by_text("rankscope, parameters ≤ 70 %: ").wait_for()
    assert "meets the target 0.7" in page.get_by_text("rankscope, parameters ≤ 70 %: ").inner_text()
    assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 2, "the trade-off chart lacks the new point"
    _shot(page, tmp_path, "6-plan-auto")
    page.close()


def test_a_real_pretrained_model_opens(server, browser, tmp_path):
    page = _open(browser, server)
    shipped = page.locator('[data-testid="stSelectbox"]').filter(has_text="Shipped model").locator("input")
    shipped.fill("imagenet-mobilenetv2")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Baseline: imagenet-mobilenetv2").wait_for()
    _idle(page)
    assert _metric(page, "Parameters") == "3.50 M"
    assert _metric(page, "Top-1").endswith(" %")  # its task's headline, on the labelled imagenet-samples
    _shot(page, tmp_path, "7-real-model")
    page.close()


def test_images_page_draws_four_panels_of_a_super_resolution_model(server, browser, tmp_path):
    page = _open(browser, server)
    _go(page, "Images")
    page.get_by_text("The Images page needs a super-resolution model: fmnist-resnet").wait_for()
    page.get_by_role("button", name="Use waifu2x-photo-x2").click()  # the fastest of the shipped SR nets
    photo = page.locator('[data-testid="stSelectbox"]').filter(has_text="Photo of set5-like").locator("input")
    photo.fill("coast")  # the smallest photo, 500 x 500; its centre (the default crop) holds the horizon
    page.keyboard.press("Enter")
    _idle(page)
    page.get_by_text("waifu2x-photo-x2 x2 on coast: the plan has").wait_for()
    images = page.locator(".js-plotly-plot .imagelayer image")
    images.nth(3).wait_for()
    assert images.count() == 4, "not four image panels"
    assert page.locator(".js-plotly-plot .heatmaplayer").count() == 1, "no error map drawn"
    assert _metric(page, "Colour shift (crop)").endswith(" levels") and _metric(page, "Dense PSNR").endswith(" dB")
    _shot(page, tmp_path, "8-images")
    background = np.asarray(Image.open(tmp_path / "8-images.png").convert("L"))[5, 5]  # a corner of the page
    for i, name in enumerate(("HR", "bicubic", "dense", "compressed")):
        box = images.nth(i).bounding_box()
        assert box["width"] > 50 and box["height"] > 50, f"the {name} panel is {box}"
        pixels = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=box))).convert("L"), dtype=float)
        assert pixels.std() > 10 or abs(pixels.mean() - background) > 50, f"the {name} panel is blank"
        if name != "compressed":  # a uniform plan may well wreck the compressed image (all dark): drawn, but flat
            assert pixels.std() > 10, f"the {name} panel is flat (std {pixels.std():.1f})"
    page.close()
