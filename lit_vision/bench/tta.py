"""Flip test-time augmentation on a checkpoint's validation split: top-1/top-5 without TTA,
with the mean of the logits of image and mirror (what `--model.init_args.tta flip` does), and
with the mean of their probabilities; plus the time of a TTA forward over a plain one.

    python -m lit_vision.bench tta --config configs/quickstart.yaml --ckpt_path checkpoints/quickstart/version_0/last.ckpt
"""

from __future__ import annotations

import time

import torch

from lit_vision.utils.metrics import accuracy_metrics


def add_arguments(parser) -> None:
    parser.add_argument("--config", action="append", required=True, help="the run's config (repeatable)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint to evaluate")
    parser.add_argument("--max_batches", type=int, default=None, help="evaluate the first N validation batches only")


def run(args) -> list[dict]:
    from lit_vision.cli.export import load_model
    from lit_vision.cli.lightning_cli import build_cli

    model, _ = load_model(args.ckpt_path, ["--model.init_args.tta", "none"], args.config)

    data = build_cli([t for c in args.config for t in ("--config", c)], run=False).datamodule
    data.prepare_data()
    data.setup("validate")
    num_classes = model.hparams.num_classes
    metrics = {
        mode: accuracy_metrics(num_classes) for mode in ("none", "flip: mean logits", "flip: mean probabilities")
    }
    seconds = {"none": 0.0, "flip": 0.0}
    images_seen = 0
    with torch.no_grad():
        for i, (images, labels) in enumerate(data.val_dataloader()):
            if args.max_batches is not None and i >= args.max_batches:
                break
            # Plain and TTA forwards alternate batch by batch, so load changes hit both alike.
            model.hparams.tta = "none"
            start = time.perf_counter()
            plain = model(images)
            seconds["none"] += time.perf_counter() - start
            model.hparams.tta = "flip"
            start = time.perf_counter()
            averaged = model(images)
            seconds["flip"] += time.perf_counter() - start
            mirrored = 2 * averaged - plain  # the mirror's logits, from the module's own TTA
            probabilities = (plain.softmax(1) + mirrored.softmax(1)) / 2
            metrics["none"].update(plain, labels)
            metrics["flip: mean logits"].update(averaged, labels)
            metrics["flip: mean probabilities"].update(probabilities.log(), labels)
            images_seen += labels.shape[0]
    base = {name: float(value) for name, value in metrics["none"].compute().items()}
    rows = []
    for mode, metric in metrics.items():
        values = {name: float(value) for name, value in metric.compute().items()}
        rows.append({
            "mode": mode,
            "images": images_seen,
            "top1": round(values["top1"], 4),
            "top5": round(values["top5"], 4),
            "top1 gain (points)": round(100 * (values["top1"] - base["top1"]), 2),
            "time ratio": 1.0 if mode == "none" else round(seconds["flip"] / seconds["none"], 2),
        })  # fmt: skip
    return rows
