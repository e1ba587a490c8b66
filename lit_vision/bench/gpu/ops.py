"""`bench gpu`, section "ops": hand-written operators against torch's.

- conv: `HandWrittenConv2d` (algorithm "auto": the implicit-GEMM Triton kernels on CUDA where Triton
  imports) vs `nn.Conv2d` (cuDNN on a GPU) with the same weights, per SimpleNet layer (shapes
  from `lit_vision.bench.conv`), fp32 with TF32 off on both sides and bf16 on both sides,
  forward + backward (no input gradient for the stem, as in training); max |difference| of
  outputs and of all gradients, and each side's relative error against float64
  (`lit_vision/bench/conv_layer.py`).
- SimpleNet end to end: a whole training step (forward, loss, backward, SGD/AdamW step as the
  recipe builds it) with `conv: hand_written` (`conv_algorithm: auto`) vs `conv: torch`, fp32
  (TF32 off) and bf16 autocast.
- attention: `attention(impl="manual")` vs `impl="sdpa"` at the ViT recipe's shapes (global
  blocks: all tokens; windowed blocks: window² tokens per window), fp32 and bf16 autocast,
  forward + backward; max |difference| of outputs and of the q/k/v gradients.
"""

from __future__ import annotations

import contextlib
import time
from functools import partial

import torch

from lit_vision.bench.conv import simplenet_layers
from lit_vision.bench.conv_layer import compare_layer, full_fp32
from lit_vision.bench.gpu.model_speed import random_batch, training_step_fn
from lit_vision.bench.gpu.recipes import build_module, recipe
from lit_vision.bench.timing import median_seconds, time_calls
from lit_vision.ops.attention import attention


def max_difference(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(ours, theirs))


def relative_difference(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    """Largest |ours - theirs| / max|theirs| over the tensors: a difference in the units of the
    values themselves (a gradient summed over a batch of 128 is large in absolute terms)."""
    return max(
        ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item() for a, b in zip(ours, theirs)
    )


def attention_step(impl: str, q, k, v, grad_out: torch.Tensor, bf16: bool) -> list[torch.Tensor]:
    """Forward + backward of attention: [output, q grad, k grad, v grad]."""
    with torch.autocast(q.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = attention(q, k, v, impl=impl)
    return [out.detach(), *torch.autograd.grad(out, (q, k, v), grad_out.to(out.dtype))]


def conv_rows(args, batch: int, device: torch.device) -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for layer in simplenet_layers(args.image_size):
            label = f"conv {layer['name']}, {'fp32' if dtype == torch.float32 else 'bf16'}"
            try:
                row = compare_layer(layer, batch, dtype, device, 2, args.repeats)
                results, seconds = row["_results"], row["_seconds"]
                ours = next(key for key in results if key != "torch")
                rows.append(
                    {
                        "op": label,
                        "shape": row["input"],
                        "algorithm": ours,
                        "ms ours": seconds[ours] * 1e3,
                        "ms torch": seconds["torch"] * 1e3,
                        "time ratio": seconds[ours] / seconds["torch"],
                        "max diff out": max_difference(results[ours][:1], results["torch"][:1]),
                        "max diff grads": max_difference(results[ours][1:], results["torch"][1:]),
                        "rel diff grads": relative_difference(results[ours][1:], results["torch"][1:]),
                        "rel err ours": row[f"rel err {ours}"],
                        "rel err torch": row["rel err torch"],
                    }
                )
            except Exception as error:  # noqa: BLE001 — one failing layer must not stop the others
                rows.append({"op": label, "error": f"{type(error).__name__}: {error}"[:500]})
    return rows


def simplenet_conv_rows(args, batch: int, device: torch.device) -> list[dict]:
    """SimpleNet's whole training step with the hand-written convolution vs torch's."""
    rows = []
    for bf16 in (False, True):
        label = f"SimpleNet step, conv: hand_written (auto) vs torch, {'bf16 autocast' if bf16 else 'fp32'}"
        try:
            seconds = {}
            for conv in ("torch", "hand_written"):
                torch.manual_seed(0)
                module, _ = build_module("SimpleNet", args, 100, conv=conv, conv_algorithm="auto")
                module.to(device).train()
                images, labels = random_batch(batch, args.image_size, 100, device)
                step = training_step_fn(module, images, labels, bf16)
                with full_fp32() if not bf16 else contextlib.nullcontext():
                    seconds[conv], _ = time_calls(step, device, args.warmup, args.steps, float("inf"))
            rows.append(
                {
                    "op": label,
                    "shape": f"{batch}x3x{args.image_size}x{args.image_size}",
                    "ms ours": seconds["hand_written"] * 1e3,
                    "ms torch": seconds["torch"] * 1e3,
                    "time ratio": seconds["hand_written"] / seconds["torch"],
                }
            )
        except Exception as error:  # noqa: BLE001
            rows.append({"op": label, "error": f"{type(error).__name__}: {error}"[:500]})
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
                seconds = median_seconds(calls, device, 2, args.repeats)
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


def ops_rows(args, results: dict, deadline: float, rows: list, notes: list) -> None:
    device = torch.device(args.device)
    batch = args.batch_size or 128
    notes.append(
        f"batch {batch}, {args.image_size}px; median of {args.repeats} forward+backward calls after 2 warm-up, "
        "ours and torch's alternated; time ratio = ours / torch's (> 1: ours is slower); fp32 rows with TF32 off "
        "on both sides; SimpleNet step rows: mean of --steps training steps after --warmup, one model after the other"
    )
    for name, function in (("conv", conv_rows), ("SimpleNet conv", simplenet_conv_rows), ("attention", attention_rows)):
        if time.monotonic() > deadline:
            rows.append({"op": name, "skipped": "section budget spent"})
            continue
        try:
            rows.extend(function(args, batch, device))
        except Exception as error:  # noqa: BLE001 — each part on its own
            rows.append({"op": name, "error": f"{type(error).__name__}: {error}"[:500]})
        print(f"   {name} done", flush=True)
