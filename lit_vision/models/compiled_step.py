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
restore, `match_optimizer_to_mode` turns the learning rates, the implementation flags and Adam's
step counts the checkpoint brought into what the current mode uses, and `match_schedule_to_mode`
keeps the schedule's base learning rates plain floats (a fresh compiled run's schedule would
otherwise save tensors, and an eager run resumed from it would step with a tensor learning rate).
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
        # The schedule's starting point: a plain number in both modes (see match_schedule_to_mode).
        if isinstance(group.get("initial_lr"), torch.Tensor):
            group["initial_lr"] = float(group["initial_lr"])
        for name in ("foreach", "fused"):
            if name in group:
                group[name] = flags.get(name)
    _place_step_counts(optimizer)


def _place_step_counts(optimizer: torch.optim.Optimizer) -> None:
    """Adam's per-parameter step counts where the current flags want them, as torch's own
    `load_state_dict` places them: on the parameter's device for fused/capturable updates, on
    the CPU otherwise. A checkpoint keeps them where the mode that wrote it had them, and a
    device-side count in a non-capturable update costs a host-device synchronisation per
    parameter per step (the bias correction reads it as a Python number)."""
    for group in optimizer.param_groups:
        on_device = bool(group.get("fused")) or bool(group.get("capturable"))
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor):
                target = p.device if on_device else torch.device("cpu")
                if step.device != target or step.dtype != torch.float32:
                    state["step"] = step.to(device=target, dtype=torch.float32)


def match_schedule_to_mode(schedule: torch.optim.lr_scheduler.LRScheduler) -> None:
    """The schedule's base learning rates as Python floats, in both modes. torch's schedulers
    copy a tensor learning rate into `base_lrs` (and `_last_lr`) when they are built, and a
    checkpoint keeps them so. Eager, a tensor base turns the learning rate back into a tensor at
    the next schedule step (`base_lr * factor`), which takes AdamW off its foreach path and gives
    SGD a tensor `alpha`; compiled, the schedule writes the tensor learning rate with
    `fill_(value)`, which takes a float as well as a tensor. A float base serves both: eager
    assigns it, compiled fills it, and the checkpoints of either mode hold floats."""
    for name in ("base_lrs", "_last_lr"):
        values = getattr(schedule, name, None)
        if values is not None:
            setattr(schedule, name, [float(v) if isinstance(v, torch.Tensor) else v for v in values])


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
