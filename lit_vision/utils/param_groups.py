"""Optimiser parameter groups: weight decay on weight matrices and kernels only.

Biases and normalisation scales (1-D parameters) are never decayed, nor any parameter a
network names in its `no_weight_decay()` method (timm's convention, e.g. a ViT's position
embedding). Pure torch.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def no_weight_decay_names(net: nn.Module) -> set[str]:
    """The parameter names `net.no_weight_decay()` returns (none when it has no such method)."""
    hook = getattr(net, "no_weight_decay", None)
    return set(hook()) if callable(hook) else set()


def weight_decay_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    skip: set[str] = frozenset(),
    **options,
) -> list[dict]:
    """Two optimiser groups: `weight_decay` on parameters with more than one dimension whose
    name is not in `skip`, 0 on the rest. `options` (e.g. `lr_scale=0.1`) go into both."""
    decay, no_decay = [], []
    for name, param in named_parameters:
        (decay if param.ndim > 1 and name not in skip else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, **options},
        {"params": no_decay, "weight_decay": 0.0, **options},
    ]
