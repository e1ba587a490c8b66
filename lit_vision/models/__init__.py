"""LightningModules, one per architecture. Importing this package registers every
architecture (lit_vision.models.registry), which makes it selectable with `--model NAME`,
tested by tests/test_architectures.py and listed by `python -m lit_vision.models`."""

# Imported in the order `list_models()` reports them: the baseline first.
from lit_vision.models.classifier import ImageClassifier

from lit_vision.models.simplenet import SimpleNet  # isort: skip
from lit_vision.models.customnet import CustomNet1, CustomNet2  # isort: skip
from lit_vision.models.resnet import ResNet18  # isort: skip
from lit_vision.models.vit import ViT  # isort: skip
from lit_vision.models.preact_resnet import PreActResNet18  # isort: skip
from lit_vision.models.timm import Timm  # isort: skip  (any timm architecture; timm imported on use)
from lit_vision.models.registry import create_model, list_models, list_wrappers, register_model  # isort: skip

__all__ = [
    "ImageClassifier",
    "SimpleNet",
    "CustomNet1",
    "CustomNet2",
    "ResNet18",
    "ViT",
    "PreActResNet18",
    "Timm",
    "create_model",
    "list_models",
    "list_wrappers",
    "register_model",
]
