"""Benchmarks that compare ours against a reference side by side, in one run.

Usage: `python -m lit_vision.bench <name> [options] [--json out.json]`.

Every module in this package that defines `add_arguments(parser)` and
`run(args) -> list[dict]` is a sub-benchmark named after the module. `run` measures
ours and the reference alternately in the same process and returns one dict per table
row; rows should contain a ratio column, since a ratio measured side by side is the only
speed figure that means something across machines. `gpu` is a subpackage, one file per
section of its run.

Shared by the benchmarks, not benchmarks themselves: `conditions.py` (the hardware line, torch
threads, quiet Lightning), `timing.py` (device-synchronised timing of calls) and `conv_layer.py`
(one convolution layer, hand-written vs torch's: time, error, memory; `conv` and `gpu` use it).
"""
