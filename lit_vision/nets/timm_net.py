"""Any of timm's architectures as a plain `nn.Module` with a `num_classes` head, initialised at
random, from the Hugging Face hub (`pretrained=True`) or from a local weights file.

timm does the work: `timm.create_model` builds the network, and its own pretrained loader reads
the weights (hub or file), drops a classifier whose class count differs from `num_classes`, and
adapts nothing else silently (a file that does not fit is an error naming it). This module only
turns timm's failures into one-paragraph errors and reads the pretrained configuration's
normalisation and input size. timm is an optional dependency (`pip install 'lit-vision[timm]'`),
imported when a timm network is asked for. Pure torch, no Lightning.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from torch import nn

from lit_vision.errors import LitVisionError

INSTALL = "pip install 'lit-vision[timm]'"


def require_timm():
    """The timm module, or the error that says how to install it."""
    try:
        import timm
    except ImportError:
        raise LitVisionError(
            f"--model Timm needs the timm package, which is not installed: {INSTALL} (or pip install timm)."
        ) from None
    return timm


def check_name(name: str) -> None:
    """An architecture timm knows (`resnet18`, or with a weights tag: `resnet18.a1_in1k`), or an
    error with the closest names."""
    timm = require_timm()
    if timm.is_model(name):
        return
    architectures = timm.list_models()
    close = difflib.get_close_matches(name.split(".")[0], architectures, n=5, cutoff=0.6)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise LitVisionError(
        f"model.init_args.name is {name!r}, which is not one of timm's {len(architectures)} architectures.{hint} "
        "`python -c \"import timm; print(timm.list_models('*convnext*'))\"` lists them by pattern (with "
        "pretrained=True: timm.list_models(pretrained=True))."
    )


def pretrained_config(name: str) -> dict[str, Any]:
    """timm's pretrained configuration of `name` (its default weights' unless a tag is given):
    mean, std, input_size, fixed_input_size, classifier, hf_hub_id, ..."""
    timm = require_timm()
    check_name(name)
    config = timm.models.get_pretrained_cfg(name)
    return config.to_dict() if config is not None else {}


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) in [0, 1] pixel units that `name`'s pretrained weights were trained with."""
    config = pretrained_config(name)
    return tuple(config.get("mean", (0.485, 0.456, 0.406))), tuple(config.get("std", (0.229, 0.224, 0.225)))


def fixed_input_size(name: str) -> bool:
    """Whether the architecture's parameters depend on the image size (a ViT's position
    embedding, a Swin's windows): such networks are built for the data's crop."""
    return bool(pretrained_config(name).get("fixed_input_size", False))


def how_to_provide(name: str, hub_id: str | None) -> str:
    where = f"the hub repository {hub_id}" if hub_id else "timm's download URL"
    return (
        f"Provide the weights in one of these ways: (1) on a machine with internet access run "
        f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"`, which fetches them from {where} "
        "into the Hugging Face cache ($HF_HOME/hub, by default ~/.cache/huggingface/hub), and copy that cache here "
        "(then set HF_HUB_OFFLINE=1 to skip the network), or pass the weights file it holds (model.safetensors or "
        "pytorch_model.bin) as --model.init_args.pretrained_file PATH; (2) train from random initialisation with "
        "--model.init_args.pretrained false."
    )


def build_timm_net(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    img_size: int | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    timm_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """`timm.create_model(name)` with a `num_classes` head.

    `pretrained` fetches the weights of `name` (its default tag, or `arch.tag`) from the hub;
    `pretrained_file` reads them from a local file instead (a timm state dict: .safetensors, or a
    torch.save'd dict, a training checkpoint's `state_dict` too). `img_size` is passed only to
    architectures with a fixed input size (the others take any size). `drop_rate`,
    `drop_path_rate` (passed when non-zero: not every architecture has stochastic depth) and
    `timm_kwargs` go to the architecture's constructor.
    """
    timm = require_timm()
    check_name(name)
    kwargs: dict[str, Any] = dict(timm_kwargs or {})
    if drop_rate:
        kwargs["drop_rate"] = drop_rate
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if img_size is not None and fixed_input_size(name):
        kwargs.setdefault("img_size", img_size)
    config = pretrained_config(name)
    if pretrained_file is not None:
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise LitVisionError(
                f"model.init_args.pretrained_file is {str(path)!r}, which is not a file. Expected timm weights for "
                f"{name} (model.safetensors or pytorch_model.bin from the Hugging Face cache, or a file written by "
                "torch.save(model.state_dict(), path)). " + how_to_provide(name, config.get("hf_hub_id"))
            )
        net = _create(timm, name, False, num_classes, kwargs)
        load_backbone(net, path, name)
        return net
    if not pretrained:
        return _create(timm, name, False, num_classes, kwargs)
    try:
        return _create(timm, name, True, num_classes, kwargs)
    except LitVisionError:
        raise
    except Exception as error:
        # Offline, the hub client raises its own errors (LocalEntryNotFoundError, an HTTP client's
        # connection errors, timm's "no pretrained weights"): all mean the weights are not here.
        raise LitVisionError(
            f"Could not obtain the pretrained weights of timm {name} (model.init_args.pretrained: true) "
            f"({type(error).__name__}: {_first_line(error)}); this machine may be offline, or {name} may have no "
            f"pretrained weights. {how_to_provide(name, config.get('hf_hub_id'))}"
        ) from None


def _create(timm, name: str, pretrained: bool, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except TypeError as error:  # an argument the architecture's constructor does not take
        raise _bad_arguments(name, kwargs, error) from None


def load_backbone(net: nn.Module, path: Path, name: str) -> None:
    """Load every weight of the file at `path` into `net` except a classifier of another class
    count. Loaded strictly: timm's own loader only warns about the keys it could not place when
    it adapts a head, which would let a foreign file through as a random network."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path))  # safetensors or torch.save'd; EMA / "state_dict" nesting unwrapped
    except Exception as error:  # unreadable, unsafe or foreign files raise many types
        raise _bad_file(name, path, f"{type(error).__name__}: {_first_line(error)}") from None
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise _bad_file(name, path, "it holds no state dict (a mapping of names to tensors)")
    own = net.state_dict()
    head = {key for key in own if key.startswith(_head_prefixes(net))} | head_parameter_names(net)
    # The file's classifier is dropped when its shape differs (another class count).
    state = {k: v for k, v in state.items() if not (k in head and tuple(v.shape) != tuple(own[k].shape))}
    missing = sorted(set(own) - state.keys() - head)
    unexpected = sorted(state.keys() - own.keys())
    wrong = sorted(k for k in state.keys() & own.keys() if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        raise _bad_file(
            name, path, f"{len(missing)} missing keys {_some(missing)}, {len(unexpected)} unexpected keys "
            f"{_some(unexpected)}, {len(wrong)} of another shape {_some(wrong)}",
        )  # fmt: skip
    net.load_state_dict(state, strict=False)


def _head_prefixes(net: nn.Module) -> tuple[str, ...]:
    """'fc.', 'head.fc.', ...: the classifier module(s) timm's pretrained configuration names."""
    classifier = (getattr(net, "pretrained_cfg", None) or {}).get("classifier") or ()
    return tuple(f"{c}." for c in ((classifier,) if isinstance(classifier, str) else classifier))


def _bad_file(name: str, path: Path, why: str) -> LitVisionError:
    return LitVisionError(
        f"Could not load timm {name} weights from model.init_args.pretrained_file {str(path)!r} ({why}). Expected "
        "the weights of this same architecture and configuration (the classifier may have any class count: it is "
        "replaced), as model.safetensors / pytorch_model.bin from the Hugging Face cache or "
        "torch.save(model.state_dict(), path)."
    )


def _some(keys: list[str]) -> str:
    return f"{keys[:3]}{' …' if len(keys) > 3 else ''}"


def head_parameter_names(net: nn.Module) -> set[str]:
    """Names (as in `net.named_parameters()`) of the classifier's parameters: the new head,
    which learns at the full learning rate while the rest (the backbone) learns slower."""
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    heads = head if isinstance(head, (tuple, list)) else (head,)  # distilled ViTs have two heads
    ids = {id(p) for module in heads if isinstance(module, nn.Module) for p in module.parameters()}
    return {name for name, p in net.named_parameters() if id(p) in ids}


def _bad_arguments(name: str, kwargs: dict[str, Any], error: TypeError) -> LitVisionError:
    return LitVisionError(
        f"timm's {name} does not take the arguments it was given ({', '.join(sorted(kwargs)) or 'none'}): "
        f"{_first_line(error)}. Remove the one it names from model.init_args (timm_kwargs, drop_rate, drop_path_rate)."
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"


__all__ = ["INSTALL", "build_timm_net", "check_name", "fixed_input_size", "head_parameter_names", "normalization"]
