"""`bench gpu`, section "ops": hand-written operators against torch's, and the attack's cost.

- conv: `CustomConv2d` (im2col) vs `nn.Conv2d` (cuDNN on a GPU) with the same weights, per
  SimpleNet layer (shapes from `lit_vision.bench.conv`), fp32, forward + backward (no input
  gradient for the stem, as in training); max |difference| of outputs and of all gradients.
- attention: `attention(impl="manual")` vs `impl="sdpa"` at the ViT recipe's shapes (global
  blocks: all tokens; windowed blocks: window² tokens per window), fp32 and bf16 autocast,
  forward + backward; max |difference| of outputs and of the q/k/v gradients.
Section "attack": `python -m lit_vision.bench attack` run from here (PGD images/s, ours vs a textbook
  loop; a Trainer epoch with AdversarialTraining(fraction 0.2) vs a clean one), fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from lit_vision.bench._gpu_speed import recipe, synchronize
from lit_vision.bench.conv import SIMPLENET_LAYERS
from lit_vision.ops.attention import attention
from lit_vision.ops.conv import CustomConv2d


def alternate(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation (same machine state)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def max_difference(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(ours, theirs))


def conv_step(module: nn.Module, x: torch.Tensor, grad_y: torch.Tensor) -> list[torch.Tensor]:
    """Forward + backward of a convolution: [output, weight grad, bias grad, (input grad)]."""
    y = module(x)
    inputs = list(module.parameters()) + ([x] if x.requires_grad else [])
    return [y.detach(), *torch.autograd.grad(y, inputs, grad_y)]


def attention_step(impl: str, q, k, v, grad_out: torch.Tensor, bf16: bool) -> list[torch.Tensor]:
    """Forward + backward of attention: [output, q grad, k grad, v grad]."""
    with torch.autocast(q.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = attention(q, k, v, impl=impl)
    return [out.detach(), *torch.autograd.grad(out, (q, k, v), grad_out.to(out.dtype))]


def conv_rows(args, batch: int, device: torch.device) -> list[dict]:
    rows = []
    for name, c_in, c_out, kernel, stride, padding, scale in SIMPLENET_LAYERS:
        try:
            size = max(1, args.image_size // scale)
            ours = CustomConv2d(c_in, c_out, kernel, stride, padding).to(device)
            reference = nn.Conv2d(c_in, c_out, kernel, stride, padding).to(device)
            reference.load_state_dict(ours.state_dict())
            x = torch.randn(batch, c_in, size, size, device=device, requires_grad=c_in != 3)
            with torch.no_grad():
                grad_y = torch.randn_like(reference(x))

            calls = {"ours": partial(conv_step, ours, x, grad_y), "cudnn": partial(conv_step, reference, x, grad_y)}
            seconds = alternate(calls, device, 2, args.repeats)
            out_ours, out_ref = calls["ours"](), calls["cudnn"]()
            rows.append(
                {
                    "op": f"conv {name}",
                    "shape": f"{batch}x{c_in}x{size}x{size}",
                    "ms ours": seconds["ours"] * 1e3,
                    "ms torch": seconds["cudnn"] * 1e3,
                    "time ratio": seconds["ours"] / seconds["cudnn"],
                    "max diff out": max_difference(out_ours[:1], out_ref[:1]),
                    "max diff grads": max_difference(out_ours[1:], out_ref[1:]),
                }
            )
        except Exception as error:  # noqa: BLE001 — one failing layer must not stop the others
            rows.append({"op": f"conv {name}", "error": f"{type(error).__name__}: {error}"[:500]})
    return rows


def attention_rows(args, batch: int, device: torch.device) -> list[dict]:
    _, vit = recipe("ViT")
    dim, heads = int(vit.get("embed_dim", 192)), int(vit.get("num_heads", 4))
    grid = args.image_size // int(vit.get("patch_size", 16))
    window = min(grid, int(vit.get("window_size", 4)))
    shapes = {
        f"global ({grid}x{grid} tokens)": (batch, grid * grid),
        f"windowed ({window}x{window} tokens)": (batch * (grid // window) ** 2, window * window),
    }
    rows = []
    for label, (n_seq, tokens) in shapes.items():
        for bf16 in (False, True):
            try:
                shape = (n_seq, heads, tokens, dim // heads)
                q, k, v = (torch.randn(shape, device=device, requires_grad=True) for _ in range(3))
                grad_out = torch.randn(shape, device=device)

                calls = {impl: partial(attention_step, impl, q, k, v, grad_out, bf16) for impl in ("manual", "sdpa")}
                seconds = alternate(calls, device, 2, args.repeats)
                out_manual, out_sdpa = calls["manual"](), calls["sdpa"]()
                rows.append(
                    {
                        "op": f"attention {label}, {'bf16' if bf16 else 'fp32'}",
                        "shape": "x".join(map(str, shape)),
                        "ms ours": seconds["manual"] * 1e3,
                        "ms torch": seconds["sdpa"] * 1e3,
                        "time ratio": seconds["manual"] / seconds["sdpa"],
                        "max diff out": max_difference(out_manual[:1], out_sdpa[:1]),
                        "max diff grads": max_difference(out_manual[1:], out_sdpa[1:]),
                    }
                )
            except Exception as error:  # noqa: BLE001
                rows.append({"op": f"attention {label}", "error": f"{type(error).__name__}: {error}"[:500]})
    return rows


def attack_rows(args, batch: int, device: torch.device) -> list[dict]:
    from lit_vision.bench import attack

    parser = argparse.ArgumentParser()
    attack.add_arguments(parser)
    attack_args = parser.parse_args(
        [
            "--batch-size", str(batch), "--image-size", str(args.image_size), "--device", str(device),
            "--steps", "2" if args.smoke else "10", "--repeats", str(args.repeats),
            "--epoch-batches", "5" if args.smoke else "20", "--epoch-repeats", "1" if args.smoke else "2",
        ]
    )  # fmt: skip
    return [{"op": f"PGD: {row.pop('measure')}", **row} for row in attack.run(attack_args)]


def ops_rows(args, results: dict, deadline: float, rows: list, notes: list) -> None:
    device = torch.device(args.device)
    batch = args.batch_size or 128
    notes.append(
        f"batch {batch}, {args.image_size}px; median of {args.repeats} forward+backward calls after 2 warm-up, "
        "ours and torch's alternated; time ratio = ours / torch's (> 1: ours is slower)"
    )
    for name, function in (("conv", conv_rows), ("attention", attention_rows)):
        if time.monotonic() > deadline:
            rows.append({"op": name, "skipped": "section budget spent"})
            continue
        try:
            rows.extend(function(args, batch, device))
        except Exception as error:  # noqa: BLE001 — each part on its own
            rows.append({"op": name, "error": f"{type(error).__name__}: {error}"[:500]})
        print(f"   {name} done", flush=True)


def attack_section_rows(args, results: dict, deadline: float, rows: list, notes: list) -> None:
    batch = args.batch_size or 256
    notes.append(
        f"`python -m lit_vision.bench attack`, SimpleNet, batch {batch}, fp32 (see lit_vision/bench/attack.py); "
        "ratio at exactly 0.2 = an adversarial-training epoch's cost in clean epochs"
    )
    rows.extend(attack_rows(args, batch, torch.device(args.device)))
