"""The implicit-GEMM Triton convolution: exact on the CPU through Triton's interpreter, chosen by
"auto" on CUDA only where Triton imports, refused with a clear message where it cannot run.

The interpreter checks run in one subprocess (tests/_conv_interpreted.py, with TRITON_INTERPRET=1:
the switch must be set before the kernels' module is imported and must not leak into this
process); each test below asserts on its part of that run's results:
  * float64 gradcheck (fast mode) of forward, input gradient and weight gradient over the same
    geometry grid as the CPU algorithms (tests/conv_cases.py, few channels: the kernels' flat K
    order) and over 16/32-channel cases (the channel-block K order), plus every output and
    gradient against F.conv2d's in float64;
  * float32 against F.conv2d (outputs and all gradients) on small shapes, bigger ones marked slow;
  * no torch convolution op in a dispatch trace of a forward + backward; the split-K weight
    gradient identical run to run; the module path (needs_input_grad, layouts, unbatched input);
    bf16 through the interpreter's fp32 cast.
The GPU tests (fp32 with TF32 off and bf16 against cuDNN, determinism on the device) run only
where CUDA is present; the last test compiles the forward kernel for sm_90 here and reads the PTX
(IEEE fp32 really is not TF32; bf16 uses the tensor cores). ~30 s of CPU time for the not-slow part on one core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conv_cases import GRADCHECK_CASES

import lit_vision.ops.conv as conv_module
from lit_vision.errors import LitVisionError
from lit_vision.ops.conv import HandWrittenConv2d, choose_algorithm, conv2d

TESTS = Path(__file__).parent
WORKER = TESTS / "_conv_interpreted.py"
NEEDS_TRITON = pytest.mark.skipif(not conv_module.triton_available(), reason="triton is not installed")
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _run_worker(*groups: str) -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)]))
    done = subprocess.run(
        [sys.executable, str(WORKER), *groups], env=env, capture_output=True, text=True, timeout=900, cwd=TESTS
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results.pop("interpreted") is True, "the kernels were compiled, not interpreted"
    return results


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return _run_worker("gradcheck", "blocks", "float32", "misc")


def _result(results: dict, name: str):
    value = results[name]
    if isinstance(value, dict) and "exception" in value:
        pytest.fail(f"{name} raised under the interpreter:\n{value['exception']}")
    return value


@NEEDS_TRITON
@pytest.mark.parametrize("index", range(len(GRADCHECK_CASES)), ids=[f"case{i}" for i in range(len(GRADCHECK_CASES))])
def test_gradcheck_float64_interpreted(interpreted: dict, index: int) -> None:
    result = _result(interpreted, f"gradcheck-{index}")
    assert result["gradcheck"] is True
    # Output, dX, dW (and dB) against F.conv2d in float64: rounding-level agreement.
    assert max(result["errors"]) < 1e-12, result


@NEEDS_TRITON
@pytest.mark.parametrize("index", range(3), ids=["3x3", "3x3-s2-d2-g2", "1x1-s2"])
def test_channel_block_order_float64_interpreted(interpreted: dict, index: int) -> None:
    """The K order used when channels come in multiples of 16 (every SimpleNet layer but the stem)."""
    result = _result(interpreted, f"blocks-{index}")
    assert result["gradcheck"] is True
    assert max(result["errors"]) < 1e-12, result


@NEEDS_TRITON
@pytest.mark.parametrize("index", range(7), ids=[f"case{i}" for i in range(7)])
def test_float32_matches_conv2d_interpreted(interpreted: dict, index: int) -> None:
    errors = _result(interpreted, f"float32-{index}")
    assert len(errors) == 4 and max(errors) < 1e-5, errors


@NEEDS_TRITON
def test_no_torch_convolution_op_in_the_trace(interpreted: dict) -> None:
    trace = _result(interpreted, "trace")
    assert "implicit_gemm_conv2d" in trace["grad_fn"] and trace["x_grad"]  # the custom op's autograd
    assert trace["ops"], "the dispatch trace saw nothing: it would not see a convolution either"
    assert not [op for op in trace["ops"] if "conv" in op], trace["ops"]
    # Seen from outside, the module's forward + backward is the two custom ops, no torch convolution.
    assert {"implicit_gemm_conv2d", "implicit_gemm_conv2d_backward"} <= set(trace["outer"])
    assert not [op for op in trace["outer"] if "conv" in op and not op.startswith("implicit_gemm_conv2d")]


@NEEDS_TRITON
def test_the_custom_ops_fake_kernels_match_their_real_outputs(interpreted: dict) -> None:
    """torch.library.opcheck on the forward and backward ops: the fake kernels' shapes, strides
    and dtypes are the real outputs', and the autograd registration holds."""
    assert _result(interpreted, "opcheck") == {}


@NEEDS_TRITON
@pytest.mark.slow
def test_torch_compile_traces_simplenet_on_the_kernels_without_a_graph_break() -> None:
    """`torch._dynamo.explain` over SimpleNet with every convolution on the implicit-GEMM kernels
    (interpreted on the CPU; dynamo's tracing does not depend on the device): one graph, no
    break — each convolution and its backward is one custom-op node of it."""
    explained = _result(_run_worker("dynamo"), "dynamo")
    assert (explained["graphs"], explained["breaks"]) == (1, 0), explained


@NEEDS_TRITON
def test_split_weight_gradient_is_deterministic(interpreted: dict) -> None:
    result = _result(interpreted, "determinism")
    assert result["splits"] > 1, "the check must cover several partial sums"
    assert result["identical"] and result["error"] < 1e-5


@NEEDS_TRITON
def test_module_path_interpreted(interpreted: dict) -> None:
    result = _result(interpreted, "module")
    assert result["only_weight_grad"] and result["output_channels_last"]
    for key in ("channels_last_error", "non_contiguous_error", "unbatched_error"):
        assert result[key] < 1e-5, key
    assert result["unbatched_shape"] == [6, 7, 5]


@NEEDS_TRITON
def test_bfloat16_interpreted(interpreted: dict) -> None:
    result = _result(interpreted, "bfloat16")
    assert result["dtypes"] == ["torch.bfloat16"] * 4
    # bf16 results of fp32-exact products: off by the output's rounding (2**-8 relative) only.
    assert max(result["errors"]) < 1e-2, result


@NEEDS_TRITON
@pytest.mark.slow
def test_bigger_float32_shapes_interpreted() -> None:
    results = _run_worker("slow")
    assert len(results) == 3
    for name in results:
        errors = _result(results, name)
        assert max(errors) < 1e-5, (name, errors)


# --- choice and refusals, in this (non-interpreted) process ---


@NEEDS_TRITON
def test_auto_picks_implicit_gemm_on_cuda() -> None:
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for kernel, stride, padding in (((3, 3), (1, 1), (1, 1)), ((7, 7), (2, 2), (3, 3)), ((1, 1), (1, 1), (0, 0))):
            assert choose_algorithm("auto", kernel, stride, padding, dtype, "cuda") == "implicit_gemm"
    assert choose_algorithm("auto", (3, 3), (1, 1), (1, 1), torch.float64, "cuda") == "im2col"
    # The CPU keeps its algorithms (the interpreter is for tests, far too slow to train).
    assert choose_algorithm("auto", (3, 3), (1, 1), (1, 1), torch.float32, "cpu") == "shifted"
    assert choose_algorithm("auto", (7, 7), (2, 2), (3, 3), torch.float32, "cpu") == "im2col"


def test_without_triton_auto_keeps_im2col_and_says_so_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv_module, "triton_available", lambda: False)
    conv_module._warn_no_triton.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert choose_algorithm("auto", (3, 3), (1, 1), (1, 1), torch.float32, "cuda") == "im2col"
    conv_module._warn_no_triton.cache_clear()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "Triton is not installed" in messages[0] and "'im2col'" in messages[0]
    with pytest.raises(LitVisionError, match="'implicit_gemm' needs Triton"):
        HandWrittenConv2d(4, 6, 3, algorithm="implicit_gemm")


@NEEDS_TRITON
def test_cpu_tensors_are_refused_outside_the_interpreter() -> None:
    conv = HandWrittenConv2d(4, 6, 3, padding=1, algorithm="implicit_gemm")
    assert "algorithm=implicit_gemm" in repr(conv)
    with pytest.raises(LitVisionError, match=r"'implicit_gemm' runs Triton kernels on a CUDA device; got a tensor on cpu"):
        conv(torch.randn(1, 4, 7, 7))


# --- on a GPU (skipped here): the compiled kernels, TF32 off, bf16 ---

SIMPLENET_LIKE = [(3, 64, 7, 2, 3, 64), (64, 64, 1, 1, 0, 32), (64, 64, 3, 1, 1, 32), (128, 512, 1, 1, 0, 16)]


def _cuda_pair(c_in, c_out, kernel, stride, padding, size, dtype):
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(c_in, c_out, kernel, stride, padding).cuda().to(dtype)
    ours = HandWrittenConv2d(c_in, c_out, kernel, stride, padding, algorithm="implicit_gemm").cuda().to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(8, c_in, size, size, device="cuda", dtype=dtype, requires_grad=True)
    return ref, ours, x


def _step(module, x, grad_y):
    y = module(x)
    return [y, *torch.autograd.grad(y, (x, *module.parameters()), grad_y)]


@NEEDS_CUDA
@NEEDS_TRITON
@pytest.mark.parametrize("layer", SIMPLENET_LIKE, ids=lambda layer: f"{layer[2]}x{layer[2]}-{layer[0]}to{layer[1]}")
def test_gpu_float32_ieee_matches_cudnn(layer) -> None:
    """fp32 with TF32 off on both sides: agreement at fp32 rounding (TF32 would be ~1e-3)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ref, ours, x = _cuda_pair(*layer, torch.float32)
        grad_y = torch.randn_like(ref(x))
        for got, want in zip(_step(ours, x, grad_y), _step(ref, x, grad_y)):
            assert ((got - want).norm() / want.norm()).item() < 1e-5
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@NEEDS_CUDA
@NEEDS_TRITON
@pytest.mark.parametrize("layer", SIMPLENET_LIKE, ids=lambda layer: f"{layer[2]}x{layer[2]}-{layer[0]}to{layer[1]}")
def test_gpu_bfloat16_matches_float64(layer) -> None:
    """bf16 on both sides, each against the float64 convolution of the same bf16 values: ours
    (fp32 accumulation) no further from it than twice cuDNN's bf16 result."""
    ref, ours, x = _cuda_pair(*layer, torch.bfloat16)
    grad_y = torch.randn_like(ref(x))
    exact = [t.detach().double().requires_grad_() for t in (x, ref.weight, ref.bias)]
    y = F.conv2d(exact[0], exact[1], exact[2], layer[3], layer[4])
    truth = [y, *torch.autograd.grad(y, exact, grad_y.double())]
    for got, theirs, want in zip(_step(ours, x, grad_y), _step(ref, x, grad_y), truth):
        ours_error = ((got.double() - want).norm() / want.norm()).item()
        cudnn_error = ((theirs.double() - want).norm() / want.norm()).item()
        assert ours_error < max(2 * cudnn_error, 1e-2)


@NEEDS_CUDA
@NEEDS_TRITON
def test_gpu_weight_gradient_is_deterministic() -> None:
    x = torch.randn(32, 64, 32, 32, device="cuda")
    w = torch.randn(64, 64, 3, 3, device="cuda", requires_grad=True)
    grad_y = torch.randn(32, 64, 32, 32, device="cuda")
    runs = [torch.autograd.grad(conv2d(x, w, None, 1, 1, algorithm="implicit_gemm"), w, grad_y)[0] for _ in range(3)]
    assert all(torch.equal(runs[0], run) for run in runs[1:])


# --- compiled for an H100/H200 (sm_90) on this machine: what the interpreter cannot tell ---


def _compile_forward_for_sm90(dtype: str, ieee: bool) -> str:
    """PTX of the forward kernel for sm_90, specialised as a launch on SimpleNet's 64-channel 3x3
    layer (NHWC, batch 8, 32x32) would be: unit ints as constants, multiples of 16 marked so."""
    import inspect

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import lit_vision.ops.conv_implicit_gemm_kernels as kernels

    kernel = kernels.conv_forward_kernel
    n, c, h, w, k = 8, 64, 32, 32, 9 * 64
    strides = (h * w * c, 1, w * c, c)  # (n, c, h, w) strides of NHWC
    ints = [n * h * w, h, w, h, w, c, c, 3, k, *strides, k * c, c, 1, *strides, 1, 1, 1, 1, 1, 1, n * h * w]  # last: ROWS_BUCKET
    constexprs = dict(HAS_BIAS=True, ACC_FP64=False, IEEE=ieee, UPCAST=False, CHANNEL_BLOCKS=True,
                      BLOCK_M=64, BLOCK_N=64, BLOCK_K=32)  # fmt: skip
    names = list(inspect.signature(kernel.fn).parameters)
    signature, attrs = {}, {}
    for i, name in enumerate(names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif i < 4:  # the four tensors
            signature[name], attrs[(i,)] = f"*{dtype}", [["tt.divisibility", 16]]
        else:
            value = ints.pop(0)
            if value == 1:
                signature[name], constexprs[name] = "constexpr", 1
            else:
                signature[name] = "i32"
                if value % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(kernel, signature, constexprs={(names.index(k),): v for k, v in constexprs.items()}, attrs=attrs)
    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_stages": 3})
    except Exception as error:  # noqa: BLE001 — e.g. a Triton build without the NVIDIA backend
        pytest.skip(f"cannot compile for sm_90 here: {type(error).__name__}: {error}"[:300])
    return compiled.asm["ptx"]


@NEEDS_TRITON
def test_sm90_code_float32_is_ieee_and_bfloat16_uses_tensor_cores() -> None:
    ieee = _compile_forward_for_sm90("fp32", ieee=True)
    assert "tf32" not in ieee and "wgmma" not in ieee and "fma.rn.f32" in ieee
    # The same kernel without the flag is TF32 on the tensor cores: the check can tell them apart.
    assert "tf32" in _compile_forward_for_sm90("fp32", ieee=False)
    bf16 = _compile_forward_for_sm90("bf16", ieee=False)
    assert "wgmma.mma_async" in bf16 and "bf16" in bf16
    # Gathered tiles arrive by 16-byte asynchronous copies (cp.async.cg copies 16 bytes only).
    assert "cp.async.cg.shared.global" in bf16 and "cp.async.cg.shared.global" in ieee


@NEEDS_TRITON
def test_autotuning_skips_tiles_far_wider_than_the_layer() -> None:
    import triton

    from lit_vision.ops.conv_implicit_gemm import GPU_CONFIGS, tile_pruner

    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_stages=s) for m, n, k, s in GPU_CONFIGS]
    forward = tile_pruner(None, "COG")
    bf16 = {"CHANNEL_BLOCKS": True, "IEEE": False, "ACC_FP64": False}  # every tile fits its registers
    assert {c.kwargs["BLOCK_N"] for c in forward(configs, {"COG": 64}, **bf16)} == {64}  # SimpleNet's 64-channel layers
    assert len(forward(configs, {"COG": 512}, **bf16)) == len(configs)
    weight = tile_pruner("COG", "K", "CIG")
    kept = weight(configs, {"COG": 64, "K": 576, "CIG": 16}, CHANNEL_BLOCKS=True)
    assert {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in kept} == {(64, 64)}
    # Flat K order: BLOCK_N is measured against K (576), not the 16 channels; 128x64x64 spills there.
    wide = weight(configs, {"COG": 128, "K": 576, "CIG": 16}, CHANNEL_BLOCKS=False, IEEE=False, ACC_FP64=False)
    assert len(wide) == len(configs) - 1
    assert forward(configs, {"COG": 1}), "never prunes every configuration"


# --- every autotuning configuration compiled for sm_90, read for register spills ---


@NEEDS_TRITON
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_no_configuration_the_autotuner_tries_on_simplenet_spills_registers_on_sm90(dtype) -> None:
    """Every configuration the autotuner would time for SimpleNet's layers (batch 64, 128 px,
    channels-last), for the three kernels, compiled for sm_90 with the specialisation a launch
    gets: ptxas reports no spilled bytes (a spill is a round trip to local memory inside the K
    loop). ~40 compiles per dtype: a few minutes of CPU."""
    from lit_vision.nets.simplenet import SimpleCNN
    from lit_vision.ops.conv_implicit_gemm_ptxas import report

    rows = report(SimpleCNN(num_classes=100), (64, 3, 128, 128), dtypes=(dtype,))
    kernels = {row["kernel"] for row in rows}
    assert kernels == {"forward", "input_grad", "weight_grad"}
    assert {row["K order"] for row in rows} == {"flat", "channel blocks"}  # the stem and the rest
    spilling = [row for row in rows if row["spill bytes"]]
    assert not spilling, "\n".join(map(str, spilling))
    assert all(0 < row["registers"] <= 255 for row in rows)


@NEEDS_TRITON
def test_a_new_batch_size_reuses_its_buckets_tuned_tiles() -> None:
    """The autotuner's key holds the GEMM's row count rounded up to a power of two, not the
    count: batches of 60 and 64 images (a last partial batch) share every kernel's key, so the
    second launches with the first's tuned tiles instead of timing every configuration again;
    128 is a new bucket."""
    from lit_vision.ops.conv_implicit_gemm_ptxas import layer_launches

    layer = torch.nn.Conv2d(64, 64, 3, padding=1)

    def keys(batch: int) -> list[tuple]:
        found = []
        for launch in layer_launches(layer, (batch, 64, 32, 32), torch.bfloat16):
            tuned = launch.tuned
            named = {**dict(zip(tuned.arg_names, launch.args)), **launch.kwargs}
            # What triton.autotune's run() keys its cache on: the key arguments, then every dtype.
            found.append((*(named[k] for k in tuned.keys), *(str(a.dtype) for a in named.values() if hasattr(a, "dtype"))))
        return found

    assert len(keys(64)) == 3 and keys(60) == keys(64)
    assert keys(128) != keys(64)
    assert "M" not in layer_launches(layer, (2, 64, 8, 8), torch.float32)[0].tuned.keys


@NEEDS_TRITON
def test_autotuning_tries_only_the_tiles_that_fit_the_registers_of_the_launchs_precision() -> None:
    """What the compiler report for sm_90 found (the slow test above checks it): IEEE fp32 keeps
    64x128x32 and 64x64x32 (64x64x32 alone in the flat K order), 16-bit operands every tile but
    the 128x64x64 flat gather, fp64 the smallest tile; a launch is never left without one."""
    import triton

    from lit_vision.ops.conv_implicit_gemm import GPU_CONFIGS, tile_pruner

    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_stages=s) for m, n, k, s in GPU_CONFIGS]
    prune = tile_pruner(None, "COG")

    def tiles(blocks: bool, ieee: bool, fp64: bool = False) -> set:
        kept = prune(configs, {"COG": 512}, CHANNEL_BLOCKS=blocks, IEEE=ieee, ACC_FP64=fp64)
        return {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]) for c in kept}

    assert tiles(blocks=True, ieee=True) == {(64, 128, 32), (64, 64, 32)}
    assert tiles(blocks=False, ieee=True) == {(64, 64, 32)}
    assert tiles(blocks=True, ieee=False) == {(m, n, k) for m, n, k, _ in GPU_CONFIGS}
    assert tiles(blocks=False, ieee=False) == {(m, n, k) for m, n, k, _ in GPU_CONFIGS} - {(128, 64, 64)}
    assert tiles(blocks=True, ieee=True, fp64=True) == {(64, 64, 32)}
    # A 16-channel layer in fp32: BLOCK_N 128 is too wide, 64x64x32 remains.
    assert {c.kwargs["BLOCK_N"] for c in prune(configs, {"COG": 16}, CHANNEL_BLOCKS=True, IEEE=True)} == {64}
