"""Adversarial evaluation at `test` time: clean vs PGD top-1/top-5, a sweep table, a picture.

    lit-vision test --config configs/simplenet.yaml --config configs/adv_eval.yaml \\
        --ckpt_path checkpoints/simplenet/last.ckpt

For every test batch the callback attacks the module being tested and logs
`test/adv_top1` and `test/adv_top5` beside the module's own `test/top1` and `test/top5`
(micro-averaged, synchronised across ranks). With `sweep_epsilons` / `sweep_steps` it also
evaluates every epsilon × steps pair. Rank 0 prints the table and writes it into the run's
log directory (`logs/<experiment>/version_N/`) as `adversarial_eval.csv` and `.json`,
together with `adversarial_examples.png` (original / adversarial / amplified perturbation
with true and predicted class names), which also goes to TensorBoard.

Lightning runs `test` under inference mode; the attack leaves it for its own computation,
so `trainer.inference_mode: false` (set in configs/adv_eval.yaml) is belt and braces.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MetricCollection

from lit_vision.attacks.pgd import SEED_EPSILON, SEED_NUM_STEPS, PGDAttack
from lit_vision.errors import LitVisionError
from lit_vision.utils.generators import keyed_generator
from lit_vision.utils.images import to_unit_float
from lit_vision.utils.metrics import accuracy_metrics

TABLE_NAME = "adversarial_eval"
PICTURE_NAME = "adversarial_examples.png"


class AdversarialEvaluation(Callback):
    """Attack every test batch with PGD and report adversarial top-1/top-5.

    Args:
        epsilon: L∞ radius of the main attack, pixel units of [0, 1] (default ≈ 5.8/255,
            the seed's 0.1 in ImageNet-normalised units).
        num_steps: PGD steps of the main attack.
        step_size: pixel units; None means step_scale × epsilon / num_steps.
        step_scale: step size rule when step_size is None (1.0: the seed's 0.01 × 10 = 0.1).
        target: "least_likely" (the seed's attack) or "true_label".
        random_start: start from a random point of the ε-ball.
        sweep_epsilons: epsilons of the optional sweep (pixel units); [] with sweep_steps set
            means [epsilon].
        sweep_steps: step counts of the optional sweep; [] with sweep_epsilons set means
            [num_steps].
        sweep_max_batches: evaluate the sweep on the first N test batches only (None: all).
        num_images: images in the picture (from the first test batch), 0 for none.
        seed: seeds the random starts.
    """

    def __init__(
        self,
        epsilon: float = SEED_EPSILON,
        num_steps: int = SEED_NUM_STEPS,
        step_size: float | None = None,
        step_scale: float = 1.0,
        target: Literal["least_likely", "true_label"] = "least_likely",
        random_start: bool = False,
        sweep_epsilons: list[float] | None = None,
        sweep_steps: list[int] | None = None,
        sweep_max_batches: int | None = None,
        num_images: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if step_size is None:
            step_size = step_scale * epsilon / num_steps if num_steps >= 1 else 0.0
        self.attack = PGDAttack(epsilon, step_size, num_steps, target=target, random_start=random_start)
        sweep_epsilons, sweep_steps = list(sweep_epsilons or []), list(sweep_steps or [])
        if sweep_epsilons or sweep_steps:
            sweep_epsilons = sweep_epsilons or [epsilon]
            sweep_steps = sweep_steps or [num_steps]
        self.sweep = [
            PGDAttack(eps, step_scale * eps / steps if steps >= 1 else 0.0, steps, target=target, random_start=random_start)
            for eps in sweep_epsilons
            for steps in sweep_steps
        ]
        if sweep_max_batches is not None and sweep_max_batches < 1:
            raise LitVisionError(f"AdversarialEvaluation sweep_max_batches must be >= 1 or null, got {sweep_max_batches}.")
        if num_images < 0:
            raise LitVisionError(f"AdversarialEvaluation num_images must be >= 0, got {num_images}.")
        self.sweep_max_batches = sweep_max_batches
        self.num_images = num_images
        self.seed = seed
        self.metrics: dict[str, MetricCollection] | None = None
        self.examples: dict[str, torch.Tensor] | None = None
        self.rows: list[dict] = []  # the last test's table, also written to disk
        self.paths: dict[str, str] = {}  # what rank 0 wrote

    # ----------------------------------------------------------------- hooks
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics = None  # built on the first batch, when the class count is known
        self.examples = None

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        images, labels = batch[0], batch[1]
        if isinstance(outputs, torch.Tensor) and outputs.shape[:1] == labels.shape[:1] and outputs.ndim == 2:
            clean_logits = outputs  # the module's test_step returns its logits
        else:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                clean_logits = pl_module(images)
        if self.metrics is None:
            num_classes = clean_logits.shape[1]
            keys = ["clean", "main"] + [f"sweep{i}" for i in range(len(self.sweep))]
            self.metrics = {key: accuracy_metrics(num_classes).to(pl_module.device) for key in keys}
        self.metrics["clean"].update(clean_logits, labels)

        generator = None
        if self.attack.random_start:
            generator = keyed_generator(images.device, self.seed, batch_idx, trainer.global_rank)
        with trainer.precision_plugin.forward_context():
            result = self.attack.attack(pl_module, images, labels, generator=generator)
            self.metrics["main"].update(result.logits, labels)
            if self.sweep_max_batches is None or batch_idx < self.sweep_max_batches:
                for i, attack in enumerate(self.sweep):
                    sweep_result = attack.attack(pl_module, images, labels, generator=generator)
                    self.metrics[f"sweep{i}"].update(sweep_result.logits, labels)

        if self.examples is None and self.num_images and dataloader_idx == 0:
            k = min(self.num_images, labels.shape[0])
            self.examples = {
                "clean": to_unit_float(images[:k]).float().cpu(),
                "adversarial": result.images[:k].float().cpu(),
                "labels": labels[:k].cpu(),
                "clean_pred": clean_logits[:k].argmax(1).cpu(),
                "adversarial_pred": result.logits[:k].argmax(1).cpu(),
            }

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.metrics is None:
            return
        # compute() synchronises across ranks: every rank must get here.
        values = {key: {name: float(v) for name, v in m.compute().items()} for key, m in self.metrics.items()}
        pl_module.log("test/adv_top1", values["main"]["top1"], sync_dist=False)
        pl_module.log("test/adv_top5", values["main"]["top5"], sync_dist=False)

        def row(name: str, attack: PGDAttack | None, key: str) -> dict:
            eps = attack.epsilon if attack else 0.0
            return {
                "attack": name,
                "epsilon": round(eps, 6),
                "epsilon_255": round(eps * 255, 3),
                "steps": attack.num_steps if attack else 0,
                "step_size": round(attack.step_size, 6) if attack else 0.0,
                "top1": values[key]["top1"],
                "top5": values[key]["top5"],
            }

        self.rows = [row("clean", None, "clean"), row(self.attack.target, self.attack, "main")]
        self.rows += [row(a.target + " (sweep)", a, f"sweep{i}") for i, a in enumerate(self.sweep)]
        for metrics in self.metrics.values():
            metrics.reset()
        # trainer.log_dir broadcasts from rank 0: every rank must ask for it.
        log_dir = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero:
            self._write(trainer, log_dir)

    # ---------------------------------------------------------------- output
    def _write(self, trainer: L.Trainer, log_dir: str) -> None:
        from lit_vision.bench.table import format_table

        os.makedirs(log_dir, exist_ok=True)
        rank_zero_info(f"Adversarial evaluation ({self.attack}):\n{format_table(self.rows)}")
        csv_path = os.path.join(log_dir, f"{TABLE_NAME}.csv")
        with open(csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        json_path = os.path.join(log_dir, f"{TABLE_NAME}.json")
        with open(json_path, "w") as handle:
            json.dump({"checkpoint": trainer.ckpt_path, "attack": repr(self.attack), "rows": self.rows}, handle, indent=2)
        self.paths = {"csv": csv_path, "json": json_path}
        if self.examples is not None:
            picture = render_examples(self.examples, self.attack.epsilon, class_names(trainer))
            png_path = os.path.join(log_dir, PICTURE_NAME)
            from PIL import Image

            Image.fromarray(picture).save(png_path)
            self.paths["png"] = png_path
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(
                        "test/adversarial_examples", picture, trainer.global_step, dataformats="HWC"
                    )
        rank_zero_info("Wrote " + ", ".join(self.paths.values()))


def class_names(trainer: L.Trainer) -> list[str] | None:
    names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
    return list(names) if names else None


def render_examples(examples: dict[str, torch.Tensor], epsilon: float, names: list[str] | None) -> np.ndarray:
    """A (H, W, 3) uint8 picture: one row per image — original, adversarial, and the
    perturbation amplified to the full range (grey = 0, ±epsilon = black/white)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def name(index: int) -> str:
        text = names[index] if names and 0 <= index < len(names) else str(index)
        text = text.strip("/").split("/", 1)[-1] if "/" in text else text  # "/a/abbey" -> "abbey"
        return text if len(text) <= 22 else text[:21] + "…"

    clean, adversarial = examples["clean"], examples["adversarial"]
    delta = adversarial - clean
    amplified = (0.5 + delta / (2 * epsilon)).clamp(0, 1) if epsilon > 0 else torch.full_like(delta, 0.5)
    rows = clean.shape[0]
    figure = Figure(figsize=(6.6, 2.35 * rows), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 3, squeeze=False)
    for i in range(rows):
        true, before, after = (int(examples[k][i]) for k in ("labels", "clean_pred", "adversarial_pred"))
        panels = [
            (clean[i], f"true: {name(true)}\npred: {name(before)}", "green" if before == true else "red"),
            (adversarial[i], f"adversarial\npred: {name(after)}", "green" if after == true else "red"),
            (amplified[i], f"perturbation\n(±{epsilon * 255:.2g}/255 → full range)", "black"),
        ]
        for ax, (image, title, colour) in zip(axes[i], panels):
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=8, color=colour)
            ax.axis("off")
    figure.tight_layout()
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
