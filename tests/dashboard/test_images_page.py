"""The Images page: a non-SR model gets a message; an SR model's crop of a photo is drawn four ways, with the error map,
colour shifts and PSNRs core computes for the same models, photo and crop, and the plan under edit can be chosen."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from core.data import load_dataset
from core.evaluate.comparison import Crop, compare_images
from core.models import create_model
from core.plan import compress
from core.plan.starting import make_plan

from tests.dashboard.helpers import deltas, metrics

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: runs an SR model on a whole photo

SR = dict(model="waifu2x-photo-x2", shipped="waifu2x-photo-x2", images_photo="coast", images_side=32)  # the fastest SR net
CENTRE = Crop(234, 234, 32, 32)  # a 32-pixel crop centred on coast's 500 x 500 HR photo


def _figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _array(value: dict | list) -> np.ndarray:
    """An array of a figure's JSON: Plotly writes numpy arrays as base64 (``bdata``, ``dtype``, ``shape``)."""
    if isinstance(value, list):
        return np.asarray(value)
    shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
    return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)


@pytest.fixture(scope="module")
def waifu2x():
    model, cfg = create_model("waifu2x-photo-x2")
    photos = load_dataset("set5-like", cfg)
    return model, cfg, photos[photos.names.index("coast")]


def test_a_model_that_is_not_super_resolution_gets_a_message_and_a_way_out(page):
    at = page("pages/images.py", images_photo="coast", images_side=32)  # fmnist-resnet, the default
    assert at.title[0].value == "Images"
    assert at.info[0].value == ("The Images page needs a super-resolution model: fmnist-resnet does not output images "
                                "(scale 1). Choose one on the Model page (srmd-x2, srmd-x4, waifu2x-photo-x2), or here:")
    assert not at.get("plotly_chart") and not at.metric
    assert [b.label for b in at.button] == ["Use srmd-x2", "Use srmd-x4", "Use waifu2x-photo-x2"]

    at.button[2].click().run()
    assert not at.exception, at.exception
    assert (at.session_state["model"], at.session_state["shipped"], at.session_state["source"]) == (
        "waifu2x-photo-x2", "waifu2x-photo-x2", "shipped")  # as the Model page would have it
    assert not at.info and len(at.get("plotly_chart")) == 2


def test_a_crop_drawn_four_ways_with_what_core_computes(page, waifu2x):
    at = page("pages/images.py", **SR)
    assert at.radio(key="_w_images_source").value == "uniform"  # no plan under edit for this model yet
    model, cfg, (lr, hr) = waifu2x
    plan = make_plan(model, cfg, "tucker2", ratio=0.5)
    expected = compare_images(model, compress(model, cfg, plan, force=True)[0], lr, hr, 2, CENTRE)

    panels, error = _figures(at)
    assert [t["type"] for t in panels["data"]] == ["image"] * 4
    assert [t["x0"] for t in panels["data"]] == [234] * 4 and [t["y0"] for t in panels["data"]] == [234] * 4
    for trace, name in zip(panels["data"], ("hr", "bicubic", "dense", "compressed")):
        assert np.array_equal(_array(trace["z"]), expected.panel(name)), name
    assert [a["text"] for a in panels["layout"]["annotations"]] == [
        "HR photo", f"Bicubic x2 · {expected.psnr['bicubic']:.2f} dB", f"Dense model · {expected.psnr['dense']:.2f} dB",
        f"Compressed (plan) · {expected.psnr['compressed']:.2f} dB"]
    assert panels["layout"]["xaxis4"]["matches"] == "x" and panels["layout"]["yaxis2"]["matches"] == "y"  # linked zoom
    assert error["data"][0]["type"] == "heatmap" and np.array_equal(_array(error["data"][0]["z"]), expected.error)
    shown, moved = metrics(at), deltas(at)
    assert shown["Dense PSNR"] == f"{expected.psnr['dense']:.2f} dB"
    assert shown["Compressed PSNR"] == f"{expected.psnr['compressed']:.2f} dB"
    assert moved["Compressed PSNR"] == f"{expected.psnr['compressed'] - expected.psnr['dense']:+.2f} dB"
    assert shown["Colour shift (crop)"] == f"{expected.colour_shift:.2f} levels"
    assert shown["Colour shift (photo)"] == f"{expected.photo_colour_shift:.2f} levels"
    assert shown["Parameters"] == "274.31 k"
    assert at.caption[0].value.startswith("waifu2x-photo-x2 x2 on coast: the plan has 7 entries (tucker2).")

    at.slider(key="_w_images_across").set_value(0).run()  # to the left edge: the crop is moved back inside the photo
    assert not at.exception, at.exception
    panels, _ = _figures(at)
    assert [t["x0"] for t in panels["data"]] == [0] * 4 and panels["data"][1]["y0"] == 234


def test_the_plan_under_edit_can_be_shown(page):
    at = page("pages/images.py", **SR, images_source="edit")
    caption = at.caption[0].value
    assert caption.startswith("waifu2x-photo-x2 x2 on coast: the plan has 7 entries")  # every layer at half rank
    assert at.session_state["plan_for"] == ("waifu2x-photo-x2", "")
    assert len(_figures(at)) == 2 and "Colour shift (crop)" in metrics(at)
