"""The Lightning "system" shared by every architecture: loss, top-1/top-5 metrics,
optimiser and learning-rate schedule. Each architecture is a thin subclass whose
`build_net` returns its plain `nn.Module` network; the network's typed signature is the
only place its arguments are declared (see docs/architectures.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MetricCollection

from lit_vision.errors import LitVisionError
from lit_vision.models.compiled_step import (
    COMPILE_MODES,
    carry_step_count,
    implementation,
    install_compiled_update,
    match_optimizer_to_mode,
    match_schedule_to_mode,
    resolve_mode,
)
from lit_vision.nets.layers import Normalize
from lit_vision.utils.metrics import accuracy_metrics
from lit_vision.utils.param_groups import no_weight_decay_names, weight_decay_groups


class WarmupCosine:
    """Learning-rate factor per optimiser step: linear warm-up from ~0, then cosine decay to
    `min_ratio`. A class rather than a lambda so the scheduler's state can be saved."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, warmup_steps + 1)
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ImageClassifier(L.LightningModule):
    """Cross-entropy classifier over pixel-space images (uint8 or float in [0, 1]).

    Subclasses implement `build_net(**net_args)`, which receives `num_classes` and every
    argument this class does not take, and returns the network. Normalisation with ImageNet
    statistics is the model's first operation (see `Normalize`).
    """

    net: nn.Module
    # Handed in once per fit by a callback that changes what its batches mean (see training_loss).
    training_objective: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None

    def __init__(
        self,
        num_classes: int = 100,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 5.0,
        min_lr_ratio: float = 0.0,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool | Literal["model", "step"] = False,
        compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "auto",
        tta: Literal["none", "flip"] = "none",
        **net_args,
    ) -> None:
        """
        Args:
            num_classes: classes of the head; must equal the data's.
            optimizer: "sgd" (with `momentum`) or "adamw" (betas 0.9, 0.999).
            lr: peak learning rate, reached at the end of warm-up.
            momentum: SGD momentum (ignored by AdamW).
            weight_decay: applied to weight matrices and kernels only, not to biases and norms.
            warmup_epochs: linear warm-up length in epochs (fractions allowed), stepped per batch.
            min_lr_ratio: the cosine decays to `lr * min_lr_ratio` at the last step.
            label_smoothing: cross-entropy label smoothing in [0, 1).
            channels_last: keep weights and activations in NHWC memory order (faster
                convolutions on GPUs with tensor cores, especially under bf16).
            compile: `torch.compile` (the first steps are slow while it compiles; checkpoints keep
                the uncompiled state). false: eager; true or "model": the network; "step": also
                the training step's loss and backward, and the optimiser's update with the
                learning rate held in a tensor (Lightning's manual optimisation; see
                `lit_vision.models.compiled_step`). "step" needs trainer.accumulate_grad_batches 1
                and no gradient clipping.
            compile_mode: torch.compile's mode for `compile: step`; "auto": "reduce-overhead"
                (CUDA graphs) on CUDA, "default" elsewhere. The network alone (`compile: model`)
                always uses "default".
            tta: test-time augmentation in eval mode (validate, test, predict, attacks on the
                evaluated model): "flip" averages the logits of each image and its horizontal
                mirror; "none" uses the image alone. An evaluation choice: checkpoints do not
                carry it, each command states it.
            **net_args: the architecture's own arguments, passed to `build_net`. LightningCLI
                follows them into the network's signature, so `--help` lists them with
                their types and docs.
        """
        super().__init__()
        if num_classes < 2:
            raise LitVisionError(f"model.num_classes must be at least 2, got {num_classes}.")
        if lr <= 0:
            raise LitVisionError(f"model.lr must be positive, got {lr}.")
        if not 0 <= label_smoothing < 1:
            raise LitVisionError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}.")
        if warmup_epochs < 0:
            raise LitVisionError(f"model.warmup_epochs must be >= 0, got {warmup_epochs}.")
        if tta not in ("none", "flip"):
            raise LitVisionError(f"model.tta must be 'none' or 'flip', got {tta!r}.")
        if compile not in (False, True, "model", "step"):
            raise LitVisionError(f"model.compile must be false, true, 'model' or 'step', got {compile!r}.")
        if compile_mode not in COMPILE_MODES:
            raise LitVisionError(f"model.compile_mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}.")
        self.save_hyperparameters()
        # compile: step drives its own backward and optimiser step (see training_step).
        self.automatic_optimization = compile != "step"
        if compile == "step":
            # Lightning warns that a step-interval checkpoint of a manually optimised module holds
            # the weights after the step: so does every checkpoint of the automatic mode.
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
        self.normalize = Normalize()
        self.train_metrics = accuracy_metrics(num_classes, "train/")
        self.val_metrics = accuracy_metrics(num_classes, "val/")
        self.test_metrics = accuracy_metrics(num_classes, "test/")
        self.net = self.build_net(num_classes=num_classes, **net_args)

    def build_net(self, **net_args) -> nn.Module:
        """The architecture's network, built from `num_classes` and its own arguments."""
        raise LitVisionError(
            f"{type(self).__name__} is the shared base of the architectures and has no network: choose one with "
            "--model NAME (`python -m lit_vision.models` lists them)."
        )

    # ----------------------------------------------------------------- model
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.get("tta", "none") == "flip" and not self.training:
            # One pass over the batch and its mirror: every caller of the module in eval mode
            # (metrics, predictions, attacks) sees the averaged model, and gradients flow
            # through both halves.
            n = images.shape[0]
            both = self._logits(torch.cat([images, images.flip(-1)]))
            return (both[:n] + both[n:]) / 2
        return self._logits(images)

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        if self.hparams.get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        # The compiled wrapper lives outside the module tree (see configure_model).
        compiled = self.__dict__.get("_compiled_net")
        return (self.net if compiled is None else compiled)(x)

    def configure_model(self) -> None:
        """Apply the GPU-oriented options once, on the device, before the optimiser is built."""
        if self.hparams.get("channels_last"):
            self.net.to(memory_format=torch.channels_last)
        if self.hparams.get("compile") and "_compiled_net" not in self.__dict__:
            # Kept in __dict__, not registered as a submodule: the state dict stays that of
            # `self.net` (no `_orig_mod.` prefixes), and the wrapper shares its parameters.
            self.__dict__["_compiled_net"] = torch.compile(self.net)
        if self.hparams.get("compile") == "step" and "_compiled_loss" not in self.__dict__:
            self.__dict__["_compiled_loss"] = torch.compile(self._loss_and_logits, mode=self._step_mode())

    def _step_mode(self) -> str:
        return resolve_mode(self.hparams.get("compile_mode", "auto"), self.device)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # TTA describes how a run evaluates, not the weights: left in the checkpoint, its value
        # would override the `--model.init_args.tta` of every later command that loads it.
        checkpoint.get("hyper_parameters", {}).pop("tta", None)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A checkpoint of the other optimisation mode (compile: step is manual) keeps its step count.
        carry_step_count(checkpoint, manual=not self.automatic_optimization)

    def __getstate__(self) -> dict:
        # Copies (EMA's deepcopy, pickling) drop the compiled wrapper; it is rebuilt on demand.
        state = super().__getstate__()
        state.pop("_compiled_net", None)
        state.pop("_compiled_loss", None)
        # ...and the objective a callback handed in: a copy is not the model that callback trains.
        state.pop("training_objective", None)
        return state

    def setup(self, stage: str) -> None:
        # Models never import data: the datamodule is only asked for its class count.
        datamodule = getattr(self.trainer, "datamodule", None)
        data_classes = getattr(datamodule, "num_classes", None)
        if data_classes is not None and data_classes != self.hparams.num_classes:
            raise LitVisionError(
                f"The model {type(self).__name__} has {self.hparams.num_classes} output classes but the data "
                f"has {data_classes}: set model.init_args.num_classes to {data_classes} (or use data with "
                f"{self.hparams.num_classes} classes)."
            )

    # ----------------------------------------------------------------- steps
    def _loss_and_logits(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(images)
        return self.training_loss(logits, labels), logits

    def _compiled_training_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`compile: step`: compiled loss (+ its compiled backward), then the compiled update,
        through Lightning's manual optimisation (hooks, step counting, precision plugin)."""
        if "_compiled_loss" not in self.__dict__:
            self.configure_model()  # a module stepped outside Trainer.fit
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        cuda_graphs = self._step_mode() in ("reduce-overhead", "max-autotune")
        if cuda_graphs and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        # An objective handed in by a callback (TRADES) reads the callback's record of the batch
        # in Python: compiled, it would guard on that record and recompile as it changes, so that
        # loss runs eagerly; the network (compiled on its own) and the update below stay compiled.
        loss_fn = self._loss_and_logits if self.training_objective is not None else self.__dict__["_compiled_loss"]
        loss, logits = loss_fn(images, labels)
        if cuda_graphs:
            # CUDA-graph outputs are overwritten by the next replay; logs and callbacks keep these.
            loss, logits = loss.clone(), logits.clone()
        self.manual_backward(loss)
        optimizer.step()
        schedule.step()
        return loss.detach(), logits

    def on_train_start(self) -> None:
        # After a restore: the learning rates and optimiser flags this mode steps with, whichever
        # mode wrote the checkpoint (see lit_vision.models.compiled_step).
        for optimizer in self.trainer.optimizers:
            match_optimizer_to_mode(optimizer, self.hparams.get("compile") == "step", self.hparams.optimizer)
        for config in self.trainer.lr_scheduler_configs:
            match_schedule_to_mode(config.scheduler)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        if self.automatic_optimization:
            loss, logits = self._loss_and_logits(images, labels)
        else:
            loss, logits = self._compiled_training_step(images, labels)
        # batch_size is explicit: callbacks (adversarial training) may change the batch.
        n = labels.shape[0]
        self.train_metrics.update(logits.detach(), labels)
        # Lightning turns every progress-bar value into a Python number after each batch (a
        # host-device synchronisation per step); on an accelerator the step loss reaches the
        # logger every log_every_n_steps instead, and the bar shows the epoch's metrics.
        bar = self.device.type == "cpu" and getattr(self._trainer, "progress_bar_callback", None) is not None
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=bar, batch_size=n)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the batch, unless a callback that rebuilds batches handed the
        model its `training_objective` for the fit (AdversarialTraining's TRADES: a
        `[clean ‖ adversarial]` batch's loss is not a mean over its images)."""
        if self.training_objective is not None:
            return self.training_objective(logits, labels, self.hparams.label_smoothing)
        return F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)

    def _evaluate(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        metrics.update(logits, labels)
        n = labels.shape[0]
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", batch_size=n, sync_dist=True)
        self.log_dict(metrics, on_epoch=True, prog_bar=stage == "val", batch_size=n)
        return logits

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, self.test_metrics, "test")

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        images, indices = batch
        logits = self(images)
        top = logits.float().softmax(1).topk(min(5, logits.shape[1]), dim=1)
        return {"index": indices, "top5": top.indices, "top5_probability": top.values}

    # ------------------------------------------------------------ optimiser
    def parameter_groups(self) -> list[dict]:
        """Weight decay on weight matrices and kernels, not on biases, norm scales and what
        the network's `no_weight_decay()` names (decaying those only hurts). Subclasses may
        return more groups, e.g. a lower learning rate for a pretrained backbone (`lr_scale`
        multiplies `lr`)."""
        trainable = [(name, p) for name, p in self.net.named_parameters() if p.requires_grad]
        return weight_decay_groups(trainable, self.hparams.weight_decay, no_weight_decay_names(self.net))

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser over `parameter_groups()` (each group's `lr_scale` applied), without
        the schedule, which needs a Trainer: what benchmarks step outside Lightning."""
        hp = self.hparams
        groups = [dict(g) for g in self.parameter_groups() if g["params"]]
        for group in groups:
            group["lr"] = hp.lr * group.pop("lr_scale", 1.0)
        compiled = hp.get("compile") == "step"
        flags = implementation(hp.optimizer) if compiled else {}
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, **flags)
        else:
            optimizer = torch.optim.AdamW(groups, lr=hp.lr, **flags)
        if compiled:
            match_optimizer_to_mode(optimizer, True, hp.optimizer)  # tensor learning rates
            install_compiled_update(optimizer, self._step_mode())
        return optimizer

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = self.build_optimizer()
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            raise LitVisionError("Set trainer.max_epochs or trainer.max_steps: the learning-rate schedule needs an end.")
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches):
            # With only max_steps set, Lightning has not sized the training loader yet.
            self.trainer.fit_loop.setup_data()
            batches = self.trainer.num_training_batches
        steps_per_epoch = max(1, math.ceil(batches / self.trainer.accumulate_grad_batches))
        warmup_steps = round(hp.warmup_epochs * steps_per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, WarmupCosine(warmup_steps, int(total_steps), hp.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
