"""torchvision's ResNet18 with a new head, initialised at random or, when asked, from
ImageNet weights or a local file.

`weights`:
  "none"      random initialisation (the default: nothing is downloaded unless asked).
  "imagenet"  torchvision's `ResNet18_Weights.IMAGENET1K_V1`, fetched by torchvision's own
              mechanism (torch.hub cache under $TORCH_HOME, downloaded once when online).
  a path      a torchvision resnet18 state dict saved with `torch.save(model.state_dict())`,
              e.g. the ImageNet file copied from an online machine's torch.hub cache.
The pretrained head (`fc.*`, 1000 ImageNet classes) is always dropped: the new head for
`num_classes` starts from torchvision's default init. Pure torch, no Lightning.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from lit_vision.errors import LitVisionError
from lit_vision.nets.layers import ConvName, replace_convolutions
from lit_vision.ops.conv import Algorithm

HEAD_PREFIX = "fc."

HOW_TO_PROVIDE = (
    "Provide the weights in one of these ways: (1) on a machine with internet access run "
    "`python -c \"from torchvision.models import resnet18, ResNet18_Weights; resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)\"` "
    "and copy the file it writes ($TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth, by default "
    "~/.cache/torch/hub/checkpoints/) into the same place here, or anywhere and pass its path as "
    "`--model.weights path/to/resnet18.pth`; (2) train from random initialisation with `--model.weights none` "
    "(the default)."
)


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights from torchvision's weights enum URL, cached by torch.hub. Loaded with
    weights_only=True: the hash is only checked at download, so a file later planted in the
    cache must not be able to run code (the enum's own `get_state_dict` unpickles freely)."""
    url = ResNet18_Weights.IMAGENET1K_V1.url
    try:
        return torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as err:  # URLError/HTTPError/socket errors are OSErrors
        raise LitVisionError(
            f"Could not obtain torchvision's ImageNet ResNet18 weights ({type(err).__name__}: {err}); this "
            f"machine may be offline. {HOW_TO_PROVIDE}"
        ) from err
    except pickle.UnpicklingError as err:
        raise LitVisionError(
            f"The cached ImageNet ResNet18 weights (torch.hub cache, from {url}) are not a plain state dict and "
            f"were refused without running them ({err}). Delete the file and let it download again. {HOW_TO_PROVIDE}"
        ) from None


def file_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision state dict from a local file, loaded without executing pickled code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LitVisionError(
            f"model.weights is {str(path)!r}, which is neither 'imagenet', 'none' nor an existing file. {HOW_TO_PROVIDE}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise LitVisionError(
            f"Could not read ResNet18 weights from {str(path)!r} ({type(err).__name__}: {err}). Expected a "
            f"torchvision resnet18 state dict saved with torch.save(model.state_dict(), path)."
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        # A Lightning or training-script checkpoint: take its weights if they are a plain resnet's.
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LitVisionError(
            f"{str(path)!r} does not hold a state dict (a mapping of names to tensors); expected a torchvision "
            f"resnet18 state dict saved with torch.save(model.state_dict(), path)."
        )
    return state


def load_backbone(model: ResNet, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every weight except the head; any other missing or unexpected key is an error."""
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    expected = {k for k in model.state_dict() if not k.startswith(HEAD_PREFIX)}
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    if missing or unexpected:
        raise LitVisionError(
            f"{source} is not a torchvision resnet18 state dict: {len(missing)} missing keys "
            f"{missing[:5]}{' …' if len(missing) > 5 else ''}, {len(unexpected)} unexpected keys "
            f"{unexpected[:5]}{' …' if len(unexpected) > 5 else ''}."
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches (e.g. a resnet34/50 with the same key names)
        raise LitVisionError(f"{source} does not fit torchvision's resnet18: {err}") from err


def build_resnet18(
    num_classes: int = 100, weights: str = "none", conv: ConvName = "torch", conv_algorithm: Algorithm = "auto"
) -> ResNet:
    """torchvision resnet18 with a `num_classes` head (11,227,812 parameters for 100 classes).

    Args:
        num_classes: classes of the new head.
        weights: "none" (random initialisation, no download), "imagenet" (torchvision's
            IMAGENET1K_V1, downloaded once and cached by torch.hub), or a path to a torchvision
            resnet18 state-dict file. Restoring from a checkpoint of this model overwrites
            every weight, so a checkpoint needs no ImageNet file.
        conv: "torch" (nn.Conv2d) or "hand_written" (lit_vision.ops.conv, same weights); "im2col"
            is its earlier name.
        conv_algorithm: what the hand-written convolution runs: "auto" (per layer), "im2col",
            "shifted" (stride-1 layers only) or "implicit_gemm" (CUDA, Triton).
    """
    model = resnet18(weights=None, num_classes=num_classes)
    if weights == "imagenet":
        load_backbone(model, imagenet_state_dict(), "torchvision's ImageNet ResNet18 weights")
    elif weights != "none":
        load_backbone(model, file_state_dict(weights), f"The weights file {weights!r}")
    return replace_convolutions(model, conv, conv_algorithm)


def is_backbone(name: str) -> bool:
    return not name.startswith(HEAD_PREFIX)


__all__ = ["build_resnet18", "is_backbone", "HOW_TO_PROVIDE"]
