"""LightningModules, one per architecture. Every class imported here is selectable with
`--model NAME` on the command line (LightningCLI subclass mode)."""

from lit_vision.models.classifier import ImageClassifier
from lit_vision.models.simplenet import SimpleNet

__all__ = ["ImageClassifier", "SimpleNet"]

# Issue 4's architectures (tests/test_architectures.py runs every ImageClassifier in __all__).
from lit_vision.models.customnet import CustomNet1, CustomNet2  # noqa: E402
from lit_vision.models.resnet import ResNet18  # noqa: E402
from lit_vision.models.vit import ViT  # noqa: E402

__all__ += ["CustomNet1", "CustomNet2", "ResNet18", "ViT"]
