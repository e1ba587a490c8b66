"""Compile the implicit-GEMM kernels for a CUDA architecture on a machine without a GPU, and read
what ptxas reports for each autotuning configuration: registers per thread and bytes spilled.

    python -m lit_vision.ops.conv_implicit_gemm_ptxas            # SimpleNet's layers, sm_90, fp32 + bf16

Triton compiles for a target named by `GPUTarget("cuda", 90, 32)` without a device: its
front end, LLVM and the ptxas it ships run on the CPU. Each kernel is compiled exactly as a
launch would compile it: the launchers of `conv_implicit_gemm.py` run on CPU tensors of the
layer's shape (channels-last, as on a GPU) with the tuned kernels swapped for recorders, and
Triton's own argument binder turns the recorded arguments into the signature, constants and
alignment attributes of that launch (unit strides become constants, multiples of 16 are marked
so). Every configuration that the autotuner would try for that launch (after its pruner) is
then compiled, once per distinct specialisation.

The spill count is ptxas's own `-v` report ("N bytes spill stores"), which Triton asks for on
every compile and prints when `knobs.nvidia.dump_ptxas_log` is on. The `n_spills` of a
`CompiledKernel` is the same figure, but Triton fills it only when it loads the binary onto a
device (`CompiledKernel._init_handles`), so without a GPU the log is the only source.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import triton
from torch import nn

import lit_vision.ops.conv_implicit_gemm as launcher
from lit_vision.ops.conv_geometry import output_hw

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")


@dataclass(frozen=True)
class Launch:
    """One recorded kernel launch: the tuned kernel, its positional and keyword arguments."""

    tuned: object
    args: tuple
    kwargs: dict


@contextlib.contextmanager
def recorded_launches() -> Iterator[list[Launch]]:
    """Within this block the launchers record their three tuned kernels' launches instead of
    running them (on CPU tensors, which a GPU launch would refuse): the arguments a GPU launch
    would pass, computed by the launchers themselves."""
    launches: list[Launch] = []

    class Recorder:
        def __init__(self, tuned: object) -> None:
            self.tuned = tuned

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append(Launch(self.tuned, args, kwargs))

    names = ("_forward", "_input_grad", "_weight_grad")
    saved = {name: getattr(launcher, name) for name in names}
    try:
        for name in names:
            setattr(launcher, name, Recorder(saved[name]))
        yield launches
    finally:
        for name, tuned in saved.items():
            setattr(launcher, name, tuned)


def layer_launches(conv: nn.Conv2d, input_shape: tuple[int, ...], dtype: torch.dtype) -> list[Launch]:
    """The forward, input-gradient and weight-gradient launches of one convolution layer."""
    x = torch.zeros(input_shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.zeros(conv.weight.shape, dtype=dtype)
    bias = None if conv.bias is None else torch.zeros(conv.bias.shape, dtype=dtype)
    stride, padding, dilation = tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation)
    geometry = (stride, padding, dilation, conv.groups)
    ho, wo = output_hw(x, weight, stride, padding, dilation, conv.groups)
    dy = torch.zeros((x.shape[0], weight.shape[0], ho, wo), dtype=dtype).contiguous(memory_format=torch.channels_last)
    with recorded_launches() as launches:
        launcher._launch_forward(x, weight, bias, geometry, ho, wo)
        launcher._launch_input_grad(dy, weight, x.shape, geometry)
        launcher._launch_weight_grad(dy, x, weight.shape, geometry)
    return launches


def network_layers(net: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, nn.Conv2d, tuple[int, ...]]]:
    """(name, layer, input shape) of every Conv2d of `net` on an input of `input_shape`."""
    found: list[tuple[str, nn.Conv2d, tuple[int, ...]]] = []
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: found.append((name, m, tuple(args[0].shape))))
        for name, module in net.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            net(torch.zeros(input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return found


def tried_configs(launch: Launch) -> list[triton.Config]:
    """The configurations the autotuner would time for this launch: its list, pruned as it prunes."""
    tuned = launch.tuned
    named = dict(zip(tuned.arg_names, launch.args))
    return tuned.early_config_prune(tuned.configs, named, **launch.kwargs) if tuned.early_config_prune else tuned.configs


@dataclass(frozen=True)
class Specialised:
    """What Triton compiles for one launch and configuration: the kernel, its signature, its
    constants (unit arguments and constexprs), its alignment attributes and its options."""

    fn: object
    signature: dict
    constexprs: dict
    attrs: dict
    options: object

    @property
    def key(self) -> str:
        return f"{self.fn.__name__}|{self.signature}|{self.constexprs}|{self.attrs}|{self.options}"


def specialise(launch: Launch, config: triton.Config, target) -> Specialised:
    """The launch with `config`, specialised by Triton's own binder as its JIT would for `target`."""
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    fn = launch.tuned.fn
    backend = make_backend(target)
    kwargs = {**launch.kwargs, **config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}
    bound, specialization, options = create_function_from_signature(fn.signature, fn.params, backend)(*launch.args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    return Specialised(fn, signature, constexprs, attrs, options)


def compile_for(specialised: Specialised, target) -> tuple[object, str]:
    """Compile for `target`: (the compiled kernel, ptxas's log)."""
    from triton import knobs
    from triton.compiler import ASTSource

    s = specialised
    log = io.StringIO()
    # always_compile: a cache hit would skip ptxas, and with it the report.
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True
        compiled = triton.compile(ASTSource(s.fn, s.signature, s.constexprs, s.attrs), target=target, options=s.options.__dict__)
    return compiled, log.getvalue()


def ptxas_figures(log: str) -> tuple[int, int]:
    """(registers per thread, bytes of spill stores) from ptxas's `-v` log."""
    registers, spills = _REGISTERS.search(log), _SPILLS.search(log)
    if registers is None or spills is None:
        raise ValueError(f"no register/spill report in ptxas's log:\n{log[-2000:]}")
    return int(registers.group(1)), int(spills.group(1))


def report(net: nn.Module, input_shape: tuple[int, ...], dtypes=("fp32", "bf16"), arch: int = 90) -> list[dict]:
    """One row per distinct (kernel, specialisation, configuration) compiled for `arch`: the
    first layer that launches it, its registers per thread and its spilled bytes."""
    from triton.backends.compiler import GPUTarget

    target = GPUTarget("cuda", arch, 32)
    rows, seen = [], set()
    for dtype_name in dtypes:
        for name, conv, shape in network_layers(net, input_shape):
            for launch in layer_launches(conv, shape, DTYPES[dtype_name]):
                for config in tried_configs(launch):
                    specialised = specialise(launch, config, target)
                    if specialised.key in seen:
                        continue
                    seen.add(specialised.key)
                    registers, spilled = ptxas_figures(compile_for(specialised, target)[1])
                    rows.append({
                        "kernel": launch.tuned.fn.__name__.removeprefix("conv_").removesuffix("_kernel"),
                        "dtype": dtype_name,
                        "first layer": f"{name} {tuple(conv.weight.shape)}",
                        "K order": "channel blocks" if launch.kwargs.get("CHANNEL_BLOCKS") else "flat",
                        "tile (M, N, K) / stages": "{BLOCK_M}x{BLOCK_N}x{BLOCK_K}".format(**config.kwargs)
                        + f" / {config.num_stages}",
                        "registers": registers,
                        "spill bytes": spilled,
                    })  # fmt: skip
    return rows


def main() -> None:
    from lit_vision.nets.simplenet import SimpleCNN
    from lit_vision.utils.tables import format_table

    rows = report(SimpleCNN(num_classes=100), (64, 3, 128, 128))
    print(format_table(rows))


if __name__ == "__main__":
    main()
