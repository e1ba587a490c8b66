"""The `lit-vision` command (also `python -m lit_vision`): Lightning's fit, validate, test and
predict, plus this package's own subcommands (export, plot, optimize, ...).

    lit-vision fit --config configs/quickstart.yaml
    lit-vision fit --config configs/quickstart.yaml --ckpt_path last        # resume the newest run
    lit-vision validate --config configs/quickstart.yaml --ckpt_path last
    lit-vision export --config configs/quickstart.yaml --ckpt_path CKPT --format onnx
    lit-vision plot logs/quickstart/version_0

One job per file:
- `entry`: `main`, the console entry point: picks the subcommand, sets the exit status;
- `subcommands`: the table of subcommands. **Adding one is one entry there** (its module
  docstring says how); help, dispatch and the unknown-subcommand error read it;
- `lightning_cli`: `LitVisionCLI` (the LightningCLI subclass) and `build_cli`;
- `trainer_defaults`: the logger, checkpointing and callbacks every run gets unless configured;
- `ckpt_path`: `--ckpt_path last|best|FILE`, read safely and checked against the config
  (the run folders it reads are `lit_vision.run_folders`, shared with `studies/`);
- `flag_errors`: a command-line mistake as one paragraph with "did you mean";
- `config_files`: the one place that reads a run's YAML config files and finds them on the command line;
- `class_count_check`: a model num_classes that disagrees with the data's is an error;
- `loggers`: `--trainer.logger` (any Lightning logger, several at once) in the run's version_N;
- `timm_flags`: `--model timm:NAME`, and a timm model's img_size from `data.crop_size`;
- `resume`: whether `fit --ckpt_path` has anything left to train;
- `export`, `plot`: those subcommands.

Only `subcommands` and `entry` are imported by `import lit_vision.cli`, so `--help` is fast;
`build_cli` and `LitVisionCLI` are importable from here and load Lightning on first use.
"""

from __future__ import annotations

from lit_vision.cli.entry import main

__all__ = ["main", "build_cli", "LitVisionCLI"]


def __getattr__(name: str):
    # Lazily, so that `lit-vision --help` never imports Lightning.
    if name in ("build_cli", "LitVisionCLI"):
        import lit_vision.cli.lightning_cli as lightning_cli

        return getattr(lightning_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
