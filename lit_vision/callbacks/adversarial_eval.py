"""Adversarial evaluation at `test` time: the per-image worst case `test/robust_top1` (the
headline), clean vs PGD accuracy for one or both targets, an optional AutoAttack-grade suite,
gradient-masking checks, a sweep table and a picture.

    lit-vision test --config configs/simplenet.yaml --config configs/adv_eval.yaml \\
        --ckpt_path last
    lit-vision test --config configs/simplenet.yaml --config configs/autoattack.yaml \\
        --ckpt_path last

For every test batch the callback attacks the module being tested with each of `targets`
(each attack `restarts` times from random starts, keeping per image the run that fooled it) and
logs `test/adv_top1`/`test/adv_top5` (the first target) and `test/adv_top1_<target>` beside the
module's own `test/top1`. `test/robust_top1` is the per-image worst case: an image counts only
if the clean image and every attack run on it with epsilon ≤ `epsilon` left it correctly
classified. It is the figure the table leads with: it can never exceed clean accuracy or any
attack's, so no attack can flatter it. With `sweep_epsilons` / `sweep_steps` every target ×
epsilon × steps is evaluated too.

With `suite: autoattack` (or `autoattack_lite`, cheaper and weaker) the images that survive the
clean pass and every PGD target then go through the AutoAttack-grade cascade of
`lit_vision.attacks.autoattack` (APGD-CE, APGD-T, FAB-T, Square from torchattacks, fp32, eval
mode, each attack only on the images still robust), which enters `test/robust_top1`; each
suite attack's row gives the robust accuracy after it, the images it was run on and fooled,
and its cost (model forward passes, gradient passes, seconds), and `test/suite_seconds` the
cascade's total. The counts are summed over DDP ranks once, at the end. The survivors of
successive test batches are queued and attacked `suite_batch_size` at a time (the rest at the
end of the test, before any figure is computed): a test batch leaves few survivors, and the
targeted attacks and Square cost nearly as much per call on a handful of images as on hundreds.
Under DDP each rank queues its own shard.

Always (it needs no attack of its own), one more check: no attack may leave accuracy above the
clean accuracy on the same images (by more than `above_clean_tolerance`). A least-likely-target
attack can do that to a weak model — it pushes towards one wrong class, not away from the right
one — and a table led by it would read "adversarial accuracy above clean"; the check names it.

With `masking_checks` the sweep must not rise with epsilon or steps, a true-label PGD at
`large_epsilon` must bring accuracy to about 0, and (given `transfer_from`, a clean model's
checkpoint) a transfer attack crafted on that model must not beat the white-box one; failures
are printed as warnings and stored in the JSON (see `lit_vision.attacks.masking`). Every
adversarial batch is checked to lie in its ε-ball and in [0, 1] (by the attack itself).

Rank 0 prints the table and writes `adversarial_eval.csv`/`.json` and `adversarial_examples.png`
into the run's log directory; the picture also goes to TensorBoard. This file runs the attacks
and keeps the counts; the table's rows are built in `adversarial_rows`, the verdicts gathered
in `adversarial_checks`, the files written by `adversarial_report`.
Lightning runs `test` under inference mode; the attack leaves it for its own computation, so
`trainer.inference_mode: false` (set in configs/adv_eval.yaml) is belt and braces.
"""

from __future__ import annotations

import os
import time
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from lit_vision.attacks.autoattack import SUITE_ATTACKS, AttackSuite, float32, require_autoattack
from lit_vision.attacks.autoattack_checks import model_checks
from lit_vision.attacks.masking import masking_checks
from lit_vision.attacks.suite_buffer import Flushed, SuiteBuffer
from lit_vision.attacks.pgd import (
    ASSIGNMENT_PGD_EPSILON,
    ASSIGNMENT_PGD_STEPS,
    PGDAttack,
    eval_mode,
    gradients_enabled,
    step_size_for,
)
from lit_vision.callbacks.adversarial_checks import above_clean, authors_checks, warn_failed
from lit_vision.callbacks.adversarial_report import (
    PICTURE_NAME,
    TABLE_NAME,
    render_examples,
    write_picture,
    write_tables,
)
from lit_vision.callbacks.adversarial_rows import (
    HEADLINE,
    SUITE_COUNTS,
    headline_row,
    over_every_image,
    pgd_row,
    suite_rows,
    with_interval,
)
from lit_vision.callbacks.run_data import class_names
from lit_vision.checkpoints import load_model_from_checkpoint
from lit_vision.errors import LitVisionError
from lit_vision.utils.generators import keyed_generator
from lit_vision.utils.images import to_unit_float
from lit_vision.utils.metrics import accuracy_metrics
from lit_vision.utils.tables import format_table

__all__ = ["AdversarialEvaluation", "HEADLINE", "PICTURE_NAME", "TABLE_NAME"]

Target = Literal["least_likely", "true_label"]
Suite = Literal["none", "autoattack", "autoattack_lite"]
SuiteAttack = Literal["apgd_ce", "apgd_t", "fab_t", "square"]
Engine = Literal["autoattack", "torchattacks"]
# Madry et al.'s step rule for the checks' own attacks (large epsilon, white-box vs transfer).
CHECK_STEP_SCALE = 2.5


class AdversarialEvaluation(Callback):
    """Attack every test batch with PGD and report adversarial and worst-case accuracy.

    Args:
        epsilon: L∞ radius of the main attacks, pixel units of (0, 1] (default ≈ 5.8/255,
            the assignment's 0.1 in ImageNet-normalised units).
        num_steps: PGD steps of the main attacks.
        step_size: pixel units; None means step_scale × epsilon / num_steps.
        step_scale: step size rule when step_size is None (1.0: the assignment's 0.01 × 10 = 0.1).
        targets: attacks to run, in order; the first one is logged as test/adv_top1.
        random_start: start from a random point of the ε-ball.
        restarts: runs per main attack from independent random starts (needs random_start).
        sweep_epsilons: epsilons of the optional sweep (pixel units); [] with sweep_steps set
            means [epsilon].
        sweep_steps: step counts of the optional sweep; [] with sweep_epsilons set means [num_steps].
        sweep_max_batches: run the sweep and the checks on the first N test batches only (None: all).
        masking_checks: run the gradient-masking checks (see the module docstring).
        large_epsilon: epsilon of the "falls to ~0" check (default 64/255).
        large_epsilon_max_top1: the most top-1 that check accepts at large_epsilon.
        transfer_from: a clean model's checkpoint (written by lit-vision fit) to craft the
            transfer attack on; None skips that check.
        tolerance: how much accuracy may rise along a sweep (noise of random starts) before
            the checks call it masking.
        num_images: images in the picture (from the first test batch), 0 for none.
        seed: RNG seed of the random starts.
        suite: "none", "autoattack" (RobustBench's standard version: APGD-CE 100 steps, APGD-T
            100 steps × 9 targets, FAB-T 9 targets, Square 5000 queries) or "autoattack_lite"
            (20 steps, 3 targets, 1000 queries: cheaper and weaker). Needs torchattacks
            (`pip install 'lit-vision[attacks]'`). Runs at `epsilon` on the PGD survivors.
        suite_attacks: which suite attacks run, in this order (default all four).
        suite_cascade: each suite attack only on the images still robust (True, RobustBench's
            way); False runs each on every clean-correct image (standalone figures, full cost).
        suite_steps, suite_target_classes, suite_queries: overrides of the suite's APGD/FAB steps,
            target classes and Square queries (the suite is then labelled "custom").
        suite_engine: "autoattack" (the authors' code, package pyautoattack: the figure a paper
            compares with) or "torchattacks" (its port; not image-for-image the same).
        suite_batch_size: images per suite call: the survivors of successive test batches are
            queued and attacked this many at a time, the rest at the end of the test (the
            authors' run_standard_evaluation batches 250 by default). None: the suite runs on
            each test batch's survivors as they come (small calls; the earlier behaviour).
            Memory: the queue holds up to this many images besides the test batch.
        autoattack_checks: with a suite, run the authors' checks (randomised defence, softmax
            outputs, dynamic defence, too few classes for the targeted attacks, zero gradients,
            Square beating the white-box attacks) on the first test batch and the cascade, and
            print them beside the masking checks (needs pyautoattack).
        max_images: attack the first N images of the test split and stop the test there
            (whatever the batch size; the last batch is cut to fit, so test/top1 and every
            figure of the table are on exactly N images). None: every image. Under DDP each
            rank takes ceil(N / ranks) of its shard. Not --trainer.limit_test_batches: it
            counts batches, and LightningCLI reads `1` as the fraction 1.0, i.e. every batch.
        above_clean_tolerance: how far above the clean accuracy any attack's accuracy may be
            before the "no attack raises accuracy above clean" check fails (the same images, so
            any rise is the attack's doing).
    """

    def __init__(
        self,
        epsilon: float = ASSIGNMENT_PGD_EPSILON,
        num_steps: int = ASSIGNMENT_PGD_STEPS,
        step_size: float | None = None,
        step_scale: float = 1.0,
        targets: list[Target] = ["least_likely"],  # noqa: B006 (jsonargparse shows it as the default)
        random_start: bool = False,
        restarts: int = 1,
        sweep_epsilons: list[float] | None = None,
        sweep_steps: list[int] | None = None,
        sweep_max_batches: int | None = None,
        masking_checks: bool = True,
        large_epsilon: float = 64 / 255,
        large_epsilon_max_top1: float = 0.05,
        transfer_from: str | None = None,
        tolerance: float = 0.02,
        num_images: int = 8,
        seed: int = 0,
        suite: Suite = "none",
        suite_attacks: list[SuiteAttack] = list(SUITE_ATTACKS),  # noqa: B006 (shown as the default)
        suite_cascade: bool = True,
        suite_steps: int | None = None,
        suite_target_classes: int | None = None,
        suite_queries: int | None = None,
        suite_engine: Engine = "autoattack",
        suite_batch_size: int | None = 256,
        autoattack_checks: bool = True,
        max_images: int | None = None,
        above_clean_tolerance: float = 0.0,
    ) -> None:
        super().__init__()
        targets = [targets] if isinstance(targets, str) else list(targets)
        if not targets or len(set(targets)) != len(targets):
            raise LitVisionError(f"AdversarialEvaluation targets must name each attack once, got {targets}.")
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise LitVisionError(
                f"PGD num_steps must be an integer >= 1, got {num_steps} (AdversarialEvaluation num_steps): "
                "with no step the attack changes nothing."
            )
        if step_size is None:
            step_size = step_size_for(epsilon, num_steps, step_scale)
        self.attacks = [
            PGDAttack(epsilon, step_size, num_steps, target=t, random_start=random_start, restarts=restarts)
            for t in targets
        ]
        self.epsilon = float(epsilon)
        sweep_epsilons, sweep_steps = list(sweep_epsilons or []), list(sweep_steps or [])
        if sweep_epsilons or sweep_steps:
            sweep_epsilons = sweep_epsilons or [epsilon]
            sweep_steps = sweep_steps or [num_steps]
        for steps in sweep_steps:
            if isinstance(steps, bool) or int(steps) != steps or steps < 1:
                raise LitVisionError(f"AdversarialEvaluation sweep_steps must be integers >= 1, got {sweep_steps}.")
        self.sweep = [
            PGDAttack(eps, step_size_for(eps, steps, step_scale), steps, target=t, random_start=random_start)
            for t in targets
            for eps in sweep_epsilons
            for steps in sweep_steps
        ]
        if sweep_max_batches is not None and sweep_max_batches < 1:
            raise LitVisionError(f"AdversarialEvaluation sweep_max_batches must be >= 1 or null, got {sweep_max_batches}.")
        if num_images < 0:
            raise LitVisionError(f"AdversarialEvaluation num_images must be >= 0, got {num_images}.")
        self.masking_checks = bool(masking_checks)
        self.checks_attacks: dict[str, PGDAttack] = {}
        if self.masking_checks:
            check = dict(target="true_label", random_start=True)
            self.checks_attacks = {
                "large": PGDAttack(large_epsilon, step_size_for(large_epsilon, num_steps, CHECK_STEP_SCALE), num_steps, **check),
                "whitebox": PGDAttack(epsilon, step_size_for(epsilon, num_steps, CHECK_STEP_SCALE), num_steps, **check),
            }
        if transfer_from is not None and not self.masking_checks:
            raise LitVisionError("AdversarialEvaluation transfer_from is a masking check: set masking_checks: true.")
        if transfer_from is not None and not os.path.isfile(transfer_from):
            raise LitVisionError(
                f"AdversarialEvaluation transfer_from {transfer_from!r} is not a file: give a clean model's checkpoint "
                "written by lit-vision fit (e.g. checkpoints/quickstart/version_0/last.ckpt)."
            )
        self.transfer_from = transfer_from
        self.transfer_model: nn.Module | None = None  # set directly, or loaded from transfer_from
        self.large_epsilon_max_top1 = float(large_epsilon_max_top1)
        self.tolerance = float(tolerance)
        self.sweep_max_batches = sweep_max_batches
        self.num_images = num_images
        self.seed = seed
        if suite not in ("none", "autoattack", "autoattack_lite"):
            raise LitVisionError(
                f"AdversarialEvaluation suite must be none, autoattack or autoattack_lite; got {suite!r}."
            )
        self.suite: AttackSuite | None = None
        if suite != "none":
            self.suite = AttackSuite(
                epsilon, suite, suite_attacks, cascade=suite_cascade, apgd_steps=suite_steps,
                target_classes=suite_target_classes, fab_steps=suite_steps, square_queries=suite_queries, seed=seed,
                engine=suite_engine,
            )  # fmt: skip
        if suite_batch_size is not None and (
            isinstance(suite_batch_size, bool) or int(suite_batch_size) != suite_batch_size or suite_batch_size < 1
        ):
            raise LitVisionError(
                f"AdversarialEvaluation suite_batch_size must be an integer >= 1 or null (each test batch's survivors "
                f"as they come), got {suite_batch_size!r}: e.g. --trainer.callbacks.init_args.suite_batch_size 256."
            )
        self.suite_batch_size = None if suite_batch_size is None else int(suite_batch_size)
        self.suite_buffer: SuiteBuffer | None = None  # this rank's queue of survivors, per test
        self.autoattack_checks = bool(autoattack_checks) and self.suite is not None
        if self.autoattack_checks:
            require_autoattack()  # the checks are the authors' functions, whatever the engine
        if max_images is not None and (isinstance(max_images, bool) or int(max_images) != max_images or max_images < 1):
            raise LitVisionError(
                f"AdversarialEvaluation max_images must be an integer >= 1 or null (every image), got {max_images!r}: "
                "it is a count of images, e.g. --trainer.callbacks.init_args.max_images 500."
            )
        self.max_images = None if max_images is None else int(max_images)
        self.budget: int | None = None  # this rank's share of max_images
        self.taken = 0  # images of this rank's budget already used
        self.model_checks: list[dict] = []  # the authors' checks of the model, on the first batch
        if not above_clean_tolerance >= 0:
            raise LitVisionError(f"AdversarialEvaluation above_clean_tolerance must be >= 0, got {above_clean_tolerance}.")
        self.above_clean_tolerance = float(above_clean_tolerance)
        self.suite_counts: torch.Tensor | None = None  # (attacks, SUITE_COUNTS) on this rank
        self.images_seen: torch.Tensor | None = None
        self.pgd_seconds = 0.0
        self.num_classes = 0
        self.metrics: dict[str, MetricCollection] | None = None
        self.robust: MeanMetric | None = None
        self.examples: dict[str, torch.Tensor] | None = None
        self.rows: list[dict] = []  # the last test's table, also written to disk
        self.images_evaluated = 0  # images the last test evaluated, over every rank
        self.checks: list[dict] = []  # the last test's masking checks
        self.paths: dict[str, str] = {}  # what rank 0 wrote

    @property
    def attack(self) -> PGDAttack:
        """The main attack logged as test/adv_top1."""
        return self.attacks[0]

    # ----------------------------------------------------------------- hooks
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics = None  # built on the first batch, when the class count is known
        self.robust = MeanMetric().to(pl_module.device)
        self.examples = None
        # float64: the seconds and the counts of a large split stay exact when summed over ranks.
        if self.suite is not None:
            self.suite_counts = torch.zeros(len(self.suite.attacks), len(SUITE_COUNTS), dtype=torch.float64, device=pl_module.device)
        self.images_seen = torch.zeros((), dtype=torch.float64, device=pl_module.device)
        self.pgd_seconds = 0.0
        self.model_checks = []
        if self.suite is not None:
            self.suite.log.messages.clear()
        self.suite_buffer = None
        if self.suite is not None and self.suite_batch_size is not None:
            self.suite_buffer = SuiteBuffer(self.suite, self.suite_batch_size, key=(trainer.global_rank,))
        self.taken = 0
        self.budget = None
        if self.max_images is not None:
            self.budget = -(-self.max_images // trainer.world_size)  # ceil: every rank runs the same batches
        if self.transfer_from is not None and self.transfer_model is None:
            self.transfer_model = load_model_from_checkpoint(self.transfer_from)
        if self.transfer_model is not None:
            self.transfer_model.to(pl_module.device).eval()

    def _keys(self) -> list[str]:
        keys = ["clean"] + [f"main{i}" for i in range(len(self.attacks))] + [f"sweep{i}" for i in range(len(self.sweep))]
        keys += list(self.checks_attacks)
        return keys + (["transfer"] if self.transfer_model is not None else [])

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """The image budget: cut the batch that crosses it, end the test at the first batch past it."""
        if self.budget is None:
            return
        if self.taken >= self.budget:
            # Lightning's evaluation loop ends its epoch on a StopIteration raised inside a batch's
            # hooks (it catches it around the step, for steps that fetch their own batches); the
            # epoch-end hooks and the metrics then run as after the last batch.
            raise StopIteration
        size = len(batch[1])
        keep = self.budget - self.taken
        if keep < size:
            if not isinstance(batch, list):
                raise LitVisionError(
                    f"AdversarialEvaluation max_images {self.max_images} ends inside a test batch of {size}, and the "
                    f"batch is a {type(batch).__name__}, which cannot be cut in place: make max_images a multiple of "
                    "the batch size (per rank), or have the loader yield lists (default_collate does)."
                )
            for i, item in enumerate(batch):  # in place: test_step receives this same list
                if isinstance(item, torch.Tensor) and item.ndim and item.shape[0] == size:
                    batch[i] = item[:keep]
            size = keep
        self.taken += size

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
            self.num_classes = num_classes
            self.metrics = {key: accuracy_metrics(num_classes).to(pl_module.device) for key in self._keys()}
        self.metrics["clean"].update(clean_logits, labels)
        # Per image: still correct under every attack so far with epsilon <= self.epsilon.
        robust = clean_logits.argmax(dim=1) == labels

        def run(key: str, attack: PGDAttack, model: nn.Module = pl_module):
            nonlocal robust
            generator = None
            if attack.random_start:
                generator = keyed_generator(images.device, self.seed, batch_idx, trainer.global_rank)
            result = attack.attack(model, images, labels, generator=generator)
            if model is not pl_module:  # a transfer attack: judge the tested model on it
                with torch.no_grad():
                    result.logits = pl_module(result.images)
            self.metrics[key].update(result.logits, labels)
            if attack.epsilon <= self.epsilon + 1e-9:
                robust = robust & (result.logits.argmax(dim=1) == labels)
            return result

        with trainer.precision_plugin.forward_context():
            start = time.perf_counter()
            main = [run(f"main{i}", attack) for i, attack in enumerate(self.attacks)]
            self.pgd_seconds += time.perf_counter() - start
            if self.sweep_max_batches is None or batch_idx < self.sweep_max_batches:
                for i, attack in enumerate(self.sweep):
                    run(f"sweep{i}", attack)
                for key, attack in self.checks_attacks.items():
                    run(key, attack)
                if self.transfer_model is not None:
                    run("transfer", self.checks_attacks["whitebox"], self.transfer_model)
        if self.autoattack_checks and not self.model_checks:
            # The authors run their checks on the first batch, on the model as the suite attacks it.
            with gradients_enabled(), eval_mode(pl_module), float32(pl_module, images.device):
                unit = to_unit_float(images.detach()).float().clone(memory_format=torch.contiguous_format)
                self.model_checks = model_checks(pl_module, unit, labels.detach().clone(), self.suite.attacks)
        if self.suite is not None:
            # Outside the precision context: the suite runs in fp32 whatever the training precision.
            # A cascade goes on from the PGD survivors; standalone, each attack takes every clean-correct image.
            entry = robust if self.suite.cascade else clean_logits.argmax(dim=1) == labels
            if self.suite_buffer is None:
                key = (batch_idx, dataloader_idx, trainer.global_rank)
                result = self.suite.run(pl_module, images, labels, robust=entry, key=key)
                self._count_suite(result)
                robust = robust & result.robust
            else:
                # Only the entering images wait for the suite (with their PGD verdicts: standalone,
                # a PGD-fooled image is attacked and still not robust); the others are settled now.
                index = entry.nonzero().flatten()
                for done in self.suite_buffer.add(pl_module, images[index], labels[index], carry=robust[index]):
                    self._settle(done)
                robust = robust[~entry]
        self.images_seen += labels.shape[0]
        if robust.numel():
            self.robust.update(robust.float())

        if self.examples is None and self.num_images and dataloader_idx == 0:
            k = min(self.num_images, labels.shape[0])
            self.examples = {
                "clean": to_unit_float(images[:k]).float().cpu(),
                "adversarial": main[0].images[:k].float().cpu(),
                "labels": labels[:k].cpu(),
                "clean_pred": clean_logits[:k].argmax(1).cpu(),
                "adversarial_pred": main[0].logits[:k].argmax(1).cpu(),
            }

    def _count_suite(self, result) -> None:
        """Add one suite call's per-attack counts to this rank's totals."""
        for i, outcome in enumerate(result.outcomes):
            robust_after = int(result.correct[outcome.name].sum())
            counts = [outcome.attacked, outcome.fooled, robust_after, outcome.forwards, outcome.gradient_forwards, outcome.seconds]
            self.suite_counts[i] += torch.tensor(counts, dtype=torch.float64, device=self.suite_counts.device)

    def _settle(self, done: Flushed) -> None:
        """Queued images attacked: their counts, and their worst case (PGD and suite) into test/robust_top1."""
        self._count_suite(done.result)
        robust = done.carry.to(done.result.robust.device) & done.result.robust
        self.robust.update(robust.float())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.suite_buffer is not None:
            # The survivors still queued, before any figure is computed (each rank its own).
            for done in self.suite_buffer.flush(pl_module):
                self._settle(done)
        if self.metrics is None:
            return
        # compute() synchronises across ranks: every rank must get here.
        values = {key: {name: float(v) for name, v in m.compute().items()} for key, m in self.metrics.items()}
        robust_top1 = float(self.robust.compute())
        # The suite's counts and the seconds, summed over ranks in one collective.
        parts = [self.images_seen.view(1), torch.tensor([self.pgd_seconds], dtype=torch.float64, device=self.images_seen.device)]
        if self.suite_counts is not None:
            parts.append(self.suite_counts.flatten())
        totals = trainer.strategy.reduce(torch.cat(parts), reduce_op="sum").cpu()
        images_seen, pgd_seconds = float(totals[0]), float(totals[1])
        suite_counts = totals[2:].view(-1, len(SUITE_COUNTS)) if self.suite_counts is not None else None
        pl_module.log("test/adv_top1", values["main0"]["top1"], sync_dist=False)
        pl_module.log("test/adv_top5", values["main0"]["top5"], sync_dist=False)
        for i, attack in enumerate(self.attacks):
            pl_module.log(f"test/adv_top1_{attack.target}", values[f"main{i}"]["top1"], sync_dist=False)
        pl_module.log("test/robust_top1", robust_top1, sync_dist=False)

        def row(name: str, attack: PGDAttack | None, key: str) -> dict:
            return pgd_row(name, attack, values[key]["top1"], values[key]["top5"])

        epsilon = {"epsilon": round(self.epsilon, 6), "epsilon_255": round(self.epsilon * 255, 3)}
        # The headline first: it cannot exceed clean or any attack's accuracy.
        self.rows = [headline_row(robust_top1, epsilon), row("clean", None, "clean")]
        self.rows += [row(a.target, a, f"main{i}") for i, a in enumerate(self.attacks)]
        self.rows.append({"attack": "cost: PGD targets", **epsilon, "images": int(images_seen), "seconds": round(pgd_seconds, 3)})
        suite_part = []
        if suite_counts is not None:
            suite_part = suite_rows(self.suite, suite_counts, images_seen, epsilon, self.num_classes)
            for name, r in zip(self.suite.attacks, suite_part):
                pl_module.log(f"test/suite_top1_{name}", r["top1"], sync_dist=False)
            pl_module.log("test/suite_seconds", suite_part[-1]["seconds"], sync_dist=False)
            self.rows += suite_part
        # The figures over every evaluated image carry their Wilson 95% interval over that count.
        self.images_evaluated = int(images_seen)
        self.rows = [with_interval(r, self.images_evaluated) if over_every_image(r) else r for r in self.rows]
        self.rows += [row(f"{a.target} (sweep)", a, f"sweep{i}") for i, a in enumerate(self.sweep)]
        self.rows += [row(f"check: {key}", a, key) for key, a in self.checks_attacks.items()]
        if "transfer" in values:
            self.rows.append(row("check: transfer from clean model", self.checks_attacks["whitebox"], "transfer"))
        self.checks = []
        if self.masking_checks:
            sweep = [r for r in self.rows if r["attack"].endswith("(sweep)")]
            self.checks = masking_checks(
                sweep,
                values["large"]["top1"],
                self.checks_attacks["large"].epsilon,
                self.large_epsilon_max_top1,
                values["whitebox"]["top1"],
                values["transfer"]["top1"] if "transfer" in values else None,
                self.tolerance,
            )
        clean_top1 = values["clean"]["top1"]
        authors = authors_checks(self.model_checks, self.suite, suite_part, clean_top1) if self.autoattack_checks else []
        above = above_clean(clean_top1, self.rows, self.suite, suite_part, self.above_clean_tolerance)
        self.checks += authors + [above]
        pl_module.log("test/masking_warnings", float(warn_failed(self.checks, authors, above)), sync_dist=False)
        for metrics in self.metrics.values():
            metrics.reset()
        self.robust.reset()
        # trainer.log_dir broadcasts from rank 0: every rank must ask for it.
        log_dir = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero:
            self._write(trainer, log_dir)

    # ---------------------------------------------------------------- output
    def _write(self, trainer: L.Trainer, log_dir: str) -> None:
        attacks = [repr(a) for a in self.attacks] + ([repr(self.suite)] if self.suite is not None else [])
        rank_zero_info(f"Adversarial evaluation ({', '.join(attacks)}):\n{format_table(self.rows)}")
        if self.checks:
            rank_zero_info("Gradient-masking and AutoAttack checks:\n" + format_table(self.checks))
        meta = {"checkpoint": trainer.ckpt_path, "attacks": [repr(a) for a in self.attacks], "transfer_from": self.transfer_from,
                "suite": repr(self.suite) if self.suite is not None else None, "max_images": self.max_images,
                "images_evaluated": self.images_evaluated,
                "suite_batch_size": self.suite_batch_size if self.suite is not None else None}  # fmt: skip
        self.paths = write_tables(log_dir, self.rows, self.checks, meta)
        if self.examples is not None:
            picture = render_examples(self.examples, self.attack.epsilon, class_names(trainer))
            self.paths["png"] = write_picture(os.path.join(log_dir, PICTURE_NAME), picture)
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image("test/adversarial_examples", picture, trainer.global_step, dataformats="HWC")
        rank_zero_info("Wrote " + ", ".join(self.paths.values()))
