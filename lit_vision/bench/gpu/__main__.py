"""`python -m lit_vision.bench.gpu`: the GPU benchmark alone, without importing the other benchmarks."""

from __future__ import annotations

import argparse

from lit_vision.bench.gpu import __doc__ as description
from lit_vision.bench.gpu import add_arguments, run
from lit_vision.utils.tables import format_table

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m lit_vision.bench.gpu", description=description)
    add_arguments(parser)
    print(format_table(run(parser.parse_args())), flush=True)
