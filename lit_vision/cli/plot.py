"""`lit-vision plot`: a run's curves as a PNG, read from its TensorBoard event files.

    lit-vision plot logs/quickstart/version_0                 # -> logs/quickstart/version_0/curves.png
    lit-vision plot logs/quickstart --out quickstart.png      # every version under it, one PNG each
    lit-vision plot logs/a/version_0 logs/b/version_0 --overlay --out compare.png

Four panels, as the assignment's report figures: learning rate per step (`lr-*` from LearningRateMonitor),
loss (`train/loss` per step, `train/loss_epoch` and `val/loss` per epoch, against steps),
top-1 and top-5 accuracy per epoch (`train/top1`, `val/top1`, `train/top5`, `val/top5`,
against the epoch that Lightning logs beside them). A run is a folder holding event files;
a folder given on the command line may hold several runs (one per version_N below it).
"""

from __future__ import annotations

import argparse
import bisect
import sys
from pathlib import Path

from lit_vision.run_folders import EVAL_FOLDER
from lit_vision.errors import LitVisionError

# matplotlib and TensorBoard's reader are imported where they are used: a mistyped flag or
# folder answers before their second or so of imports.

EVENT_GLOB = "events.out.tfevents.*"
Series = tuple[list[int], list[float]]


def find_runs(folder: Path) -> list[Path]:
    """Folders under (or equal to) `folder` that hold event files, sorted. Evaluation runs
    (logs/<experiment>/eval/...) are left out unless `folder` is inside them."""
    if not folder.is_dir():
        raise LitVisionError(f"{folder} is not a folder: give a run's log folder, e.g. logs/quickstart/version_0.")
    runs = sorted(
        {path.parent for path in folder.rglob(EVENT_GLOB) if EVAL_FOLDER not in path.relative_to(folder).parts[:-1]}
    )
    if not runs:
        raise LitVisionError(
            f"{folder} holds no TensorBoard event files ({EVENT_GLOB}): give a run's log folder, "
            "e.g. logs/<experiment>/version_N (written by lit-vision fit)."
        )
    return runs


def load_scalars(run: Path) -> dict[str, Series]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run), size_guidance={"scalars": 0})
    accumulator.Reload()
    scalars = {}
    for tag in accumulator.Tags().get("scalars", []):
        events = accumulator.Scalars(tag)
        scalars[tag] = ([e.step for e in events], [e.value for e in events])
    return scalars


def by_epoch(series: Series, scalars: dict[str, Series]) -> Series:
    """Re-index an epoch-level series by epoch (1-based), using the `epoch` scalar that
    Lightning logs at the same steps; without it, by position."""
    steps, values = series
    if "epoch" not in scalars:
        return list(range(1, len(values) + 1)), values
    epoch_steps, epochs = scalars["epoch"]
    order = sorted(range(len(epoch_steps)), key=epoch_steps.__getitem__)
    epoch_steps = [epoch_steps[i] for i in order]
    epochs = [epochs[i] for i in order]
    x = []
    for step in steps:
        i = max(0, bisect.bisect_right(epoch_steps, step) - 1)
        x.append(int(epochs[i]) + 1)
    return x, values


def draw(axes, scalars: dict[str, Series], label: str | None, colour: str | None, overlay: bool) -> None:
    lr_axis, loss_axis, top1_axis, top5_axis = axes.flat
    prefix = f"{label}: " if label else ""
    lr_tags = sorted(tag for tag in scalars if tag.startswith("lr-"))
    for tag in lr_tags[:1] if overlay else lr_tags:
        lr_axis.plot(*scalars[tag], color=colour, label=f"{prefix}{tag}")
    if "train/loss" in scalars:
        loss_axis.plot(*scalars["train/loss"], color=colour, alpha=0.35, linewidth=0.8, label=f"{prefix}train (step)")
    for tag, style, name in (("train/loss_epoch", "-o", "train (epoch)"), ("val/loss", "--s", "val")):
        if tag in scalars:
            loss_axis.plot(*scalars[tag], style, color=colour, markersize=3, label=f"{prefix}{name}")
    for axis, metric in ((top1_axis, "top1"), (top5_axis, "top5")):
        for split, style in (("train", "-o"), ("val", "--s")):
            tag = f"{split}/{metric}"
            if tag in scalars:
                axis.plot(*by_epoch(scalars[tag], scalars), style, color=colour, markersize=3, label=f"{prefix}{split}")


def render(runs: list[Path], out: Path, names: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    overlay = len(runs) > 1
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    plotted = False
    for i, (run, name) in enumerate(zip(runs, names)):
        scalars = load_scalars(run)
        plotted |= bool(scalars)
        draw(axes, scalars, name if overlay else None, colours[i % len(colours)] if overlay else None, overlay)
    if not plotted:
        plt.close(figure)
        raise LitVisionError(f"{', '.join(map(str, runs))}: the event files hold no scalars yet.")
    titles = [("learning rate", "step"), ("loss", "step"), ("top-1 accuracy", "epoch"), ("top-5 accuracy", "epoch")]
    for axis, (title, xlabel) in zip(axes.flat, titles):
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=7)
        else:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes, color="grey")
    figure.suptitle(names[0] if not overlay else "  vs  ".join(names), fontsize=10)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def run_name(run: Path) -> str:
    """`logs/quickstart/version_0` -> `quickstart/version_0`."""
    return "/".join(run.resolve().parts[-2:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="lit-vision plot", description="Render a run's curves from its TensorBoard event files as PNG."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run log folders (logs/<experiment>/version_N) or parents")
    parser.add_argument(
        "--out",
        type=Path,
        help="a .png path for one figure (one run, or --overlay), otherwise a folder to write the figures "
        "into (default: curves.png inside each run folder; overlay.png in the current folder)",
    )
    parser.add_argument("--overlay", action="store_true", help="draw all runs into one figure to compare them")
    args = parser.parse_args(argv)
    try:
        runs = [run for folder in args.dirs for run in find_runs(folder)]
        if len(runs) > 1:
            # A parent folder also holds validate/test/predict runs; predict logs no scalars.
            empty = [run for run in runs if not load_scalars(run)]
            for run in empty:
                print(f"lit-vision plot: skipping {run}: its event files hold no scalars", file=sys.stderr)
            runs = [run for run in runs if run not in empty] or runs
        names = [run_name(run) for run in runs]
        # --out ending in .png names the one figure; anything else is a folder for figures.
        folder = args.out if args.out is not None and args.out.suffix.lower() != ".png" else None
        if args.overlay or len(runs) == 1:
            default = Path("overlay.png") if args.overlay else runs[0] / "curves.png"
            if folder is not None:
                default = folder / ("overlay.png" if args.overlay else f"{names[0].replace('/', '-')}.png")
            written = [render(runs, default if folder is not None or args.out is None else args.out, names)]
        else:
            if args.out is not None and folder is None:
                raise LitVisionError(
                    f"{len(runs)} runs found: give --out a folder for one PNG each, or add --overlay for one figure."
                )
            written = [
                render([run], (folder / f"{name.replace('/', '-')}.png") if folder else run / "curves.png", [name])
                for run, name in zip(runs, names)
            ]
    except LitVisionError as error:
        print(f"lit-vision plot: error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
