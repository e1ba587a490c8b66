"""`model.compile: step`: the training step's parts under `torch.compile`, the schedule without recompiles.

What `ImageClassifier` compiles with `compile: step` (Lightning's manual optimisation drives it):
- normalisation + network + cross-entropy as one graph; AOTAutograd compiles its backward with it;
- the optimiser's update (foreach SGD, fused AdamW) as another graph, installed on the optimiser
  instance (`install_compiled_update`), so Lightning's `LightningOptimizer.step` and its
  precision plugin still run around it (step counting, hooks, gradient scaling);
- each group's learning rate is a 0-d tensor on the device: the warm-up + cosine schedule
  `fill_`s it in place (torch's LR schedulers do so for tensor learning rates), so the compiled
  update sees one input whose value changes, not a new constant per step (a recompile per step).
On CUDA the mode defaults to "reduce-overhead" (CUDA graphs: the whole kernel sequence replayed
with one launch; shapes are static because training batches drop the last partial one).

Checkpoints keep the uncompiled state: the compiled callables live outside the module tree and
the optimiser's state dict is torch's own. Resuming across modes works both ways: after a
restore, `match_optimizer_to_mode` turns the learning rates and the implementation flags the
checkpoint brought into what the current mode uses.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable

import torch

COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def resolve_mode(requested: str, device: torch.device) -> str:
    """torch.compile's mode for `requested` ("auto": CUDA graphs on CUDA, the default elsewhere)."""
    if requested != "auto":
        return requested
    return "reduce-overhead" if device.type == "cuda" else "default"


def implementation(optimizer_name: str) -> dict:
    """The optimiser flags the compiled update uses: a tensor learning rate needs foreach (SGD)
    or fused (AdamW; foreach AdamW refuses a tensor lr unless `capturable`, which CPUs lack)."""
    return {"foreach": True} if optimizer_name == "sgd" else {"fused": True}


def match_optimizer_to_mode(optimizer: torch.optim.Optimizer, compiled: bool, optimizer_name: str) -> None:
    """Tensor learning rates and the compiled update's flags (`compiled`), or plain floats and
    torch's default implementation choice, whatever a restored checkpoint brought."""
    device = next((p.device for group in optimizer.param_groups for p in group["params"]), torch.device("cpu"))
    flags = implementation(optimizer_name) if compiled else {"foreach": None, "fused": None}
    for group in optimizer.param_groups:
        lr = group["lr"]
        if compiled and not isinstance(lr, torch.Tensor):
            group["lr"] = torch.tensor(float(lr), device=device)
        elif compiled:
            group["lr"] = lr.to(device=device, dtype=torch.float32)
        elif isinstance(lr, torch.Tensor):
            group["lr"] = float(lr)  # once per fit (a checkpoint of the compiled mode)
        for name in ("initial_lr",):
            if isinstance(group.get(name), torch.Tensor) and not compiled:
                group[name] = float(group[name])
        for name in ("foreach", "fused"):
            if name in group:
                group[name] = flags.get(name)


def install_compiled_update(optimizer: torch.optim.Optimizer, mode: str) -> None:
    """Replace `optimizer.step` (on this instance, before an LR scheduler wraps it) by: the
    closure, eagerly (Lightning's hooks run there), then the update, compiled."""
    if getattr(optimizer, "_lit_vision_compiled", False):
        return
    update = type(optimizer).step.__get__(optimizer)  # the class's step, bound

    @torch.compile(mode=mode)
    def compiled_update() -> None:
        update()

    def step(self, closure: Callable[[], object] | None = None):
        result = None
        if closure is not None:
            with torch.enable_grad():
                result = closure()
        compiled_update()
        return result

    # A bound method, as torch's LR schedulers expect to find (they wrap it to check the order
    # of optimizer.step and scheduler.step).
    optimizer.step = types.MethodType(step, optimizer)  # type: ignore[method-assign]
    optimizer._lit_vision_compiled = True  # type: ignore[attr-defined]


_AUTOMATIC = "epoch_loop.automatic_optimization.optim_progress"
_MANUAL = "epoch_loop.manual_optimization.optim_step_progress"


def carry_step_count(checkpoint: dict, manual: bool) -> None:
    """Lightning counts optimiser steps (`trainer.global_step`) in the automatic or the manual
    optimisation loop's progress, whichever the run used: a checkpoint of the other mode would
    resume at step 0 (and re-run the schedule's end). Copy the count across, in the checkpoint
    dict, before Lightning restores its loops from it."""
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic, manual_progress = loops.get(_AUTOMATIC), loops.get(_MANUAL)
    if not automatic or not manual_progress:
        return
    # The mode that wrote the checkpoint counted on; the other one's count is older (smaller).
    steps = automatic["optimizer"]["step"]
    if manual and manual_progress["total"]["completed"] < steps["total"]["completed"]:
        loops[_MANUAL] = copy.deepcopy(steps)
    elif not manual and steps["total"]["completed"] < manual_progress["total"]["completed"]:
        automatic["optimizer"]["step"] = copy.deepcopy(manual_progress)
