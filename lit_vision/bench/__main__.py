"""Command line of the benchmarks: discovers sub-benchmarks, runs one, prints its table."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys

import lit_vision.bench as bench_package
from lit_vision.bench.conditions import hardware_description
from lit_vision.utils.tables import format_table


def discover() -> dict:
    """Map sub-benchmark name -> module (or subpackage), for every one of this package that has
    `run` and `add_arguments`; the shared helpers (`conditions`, `timing`, `conv_layer`) have not."""
    found = {}
    for info in pkgutil.iter_modules(bench_package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"lit_vision.bench.{info.name}")
        if hasattr(module, "run") and hasattr(module, "add_arguments"):
            found[info.name] = module
    return found


def main(argv: list[str] | None = None) -> None:
    benchmarks = discover()
    parser = argparse.ArgumentParser(prog="python -m lit_vision.bench", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for name, module in sorted(benchmarks.items()):
        sub_parser = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        sub_parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
        module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    if getattr(args, "threads", 0):
        # Before the header, which names the thread count the figures were measured with.
        import torch

        torch.set_num_threads(args.threads)
    hardware = hardware_description()
    print(f"# {args.benchmark} — {hardware}", flush=True)
    rows = benchmarks[args.benchmark].run(args)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"benchmark": args.benchmark, "hardware": hardware, "rows": rows}, handle, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
