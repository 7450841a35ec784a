"""photos-labelled: evaluation photos of the pool with their ImageNet class, never a calibration photo."""
from __future__ import annotations

import pytest
import torch
from torchvision.models import MobileNet_V2_Weights

from core.data import load_dataset, training_data
from core.data.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS
from core.data.photos_labelled import IMAGENET_LABELS
from core.errors import RankscopeError
from core.models import create_model
from core.models.cfg import ModelCfg
from core.profile import evaluate

IMAGENET = ModelCfg("imagenet-model", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CATEGORIES = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]  # torchvision's names, by class index


def test_only_evaluation_photos_are_labelled_and_each_with_its_class():
    assert set(IMAGENET_LABELS) <= {p.name for p in EVALUATION_PHOTOS}
    assert not set(IMAGENET_LABELS) & {p.name for p in CALIBRATION_PHOTOS}
    for name, label in IMAGENET_LABELS.items():
        subject = name.rsplit("/", 1)[1].rstrip("0123456789s").replace("_", " ").lower()  # "meerkats" -> "meerkat"
        category = CATEGORIES[label].lower()
        assert subject in category or {"chamaeleon": "african chameleon", "scarlet macaw": "macaw", "dog":
                                        "german shepherd", "fish": "goldfish", "screwdriver": "screwdriver",
                                        "pan": "frying pan"}.get(subject) == category, (name, CATEGORIES[label])


def test_the_set_is_seventeen_labelled_images_at_the_models_input():
    ds = load_dataset("photos-labelled", IMAGENET)
    names = [p.name for p in EVALUATION_PHOTOS if p.name in IMAGENET_LABELS]
    assert len(ds) == 17 and ds.tensors[1].tolist() == [IMAGENET_LABELS[n] for n in names]
    assert ds.tensors[0].shape == (17, 3, 224, 224) and ds.tensors[0].dtype == torch.float32
    assert len(training_data("photos-labelled", IMAGENET)) == 16384  # learns from the calibration photos' crops


def test_it_refuses_training_and_models_without_the_imagenet_classes():
    with pytest.raises(RankscopeError, match="no training split; calibrate on `photos`"):
        load_dataset("photos-labelled", IMAGENET, split="train")
    with pytest.raises(RankscopeError, match="1000 classes.*predicts only 10"):
        load_dataset("photos-labelled", ModelCfg("ten", (3, 32, 32), 10))


@pytest.mark.slow  # loads MobileNetV2 (1 s on an idle two-core machine, several on a busy one)
def test_mobilenetv2_classifies_most_of_them():
    model, cfg = create_model("imagenet-mobilenetv2")
    result = evaluate(model, load_dataset("photos-labelled", cfg), batch_size=17)
    assert abs(round(result["top1"] * 17) - 13) <= 1, f"top-1 {result['top1'] * 17:.0f}/17"  # measured: 13/17
