"""LightningModules, one per architecture. Every class imported and listed in `__all__` here
is selectable with `--model NAME` on the command line (LightningCLI subclass mode) and is
covered by the parametrised suite in tests/test_architectures.py."""

from lit_vision.models.classifier import ImageClassifier
from lit_vision.models.customnet import CustomNet1, CustomNet2
from lit_vision.models.resnet import ResNet18
from lit_vision.models.simplenet import SimpleNet
from lit_vision.models.vit import ViT

__all__ = ["ImageClassifier", "SimpleNet", "CustomNet1", "CustomNet2", "ResNet18", "ViT"]
