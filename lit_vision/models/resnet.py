"""`--model ResNet18`: fine-tuning torchvision's ResNet18 (ImageNet weights by default).

Fine-tuning knobs: the backbone learns at `backbone_lr_scale × lr` while the new head
learns at `lr`; `freeze_backbone_epochs` keeps the backbone fixed (parameters frozen,
BatchNorm statistics too) for the first N epochs so the random head can settle first.
"""

from __future__ import annotations

from torch import nn

from lit_vision.errors import LitVisionError
from lit_vision.models.classifier import ImageClassifier
from lit_vision.nets.layers import ConvName
from lit_vision.nets.resnet import build_resnet18, is_backbone


class ResNet18(ImageClassifier):
    """torchvision ResNet18 with a new `num_classes` head (11.23M parameters for 100 classes)."""

    def __init__(
        self,
        num_classes: int = 100,
        weights: str = "imagenet",
        backbone_lr_scale: float = 0.1,
        freeze_backbone_epochs: int = 0,
        conv: ConvName = "torch",
        **kwargs,
    ) -> None:
        """
        Args:
            num_classes: classes of the new head.
            weights: "imagenet" (torchvision's IMAGENET1K_V1, downloaded once and cached by
                torch.hub), a path to a torchvision resnet18 state-dict file, or "none" for
                random initialisation. Restoring from a checkpoint of this model overwrites
                every weight, so `--model.weights none` spares the download there.
            backbone_lr_scale: the backbone's learning rate is `lr × backbone_lr_scale`
                (the head's is `lr`).
            freeze_backbone_epochs: train only the head for this many first epochs; the
                backbone's BatchNorm layers stay in eval mode meanwhile. Under DDP this needs
                `strategy: ddp_find_unused_parameters_true`.
            conv: "torch" (nn.Conv2d) or "custom" (the hand-written im2col convolution,
                same weights).
        """
        super().__init__(num_classes=num_classes, **kwargs)
        if backbone_lr_scale < 0:
            raise LitVisionError(f"model.backbone_lr_scale must be >= 0, got {backbone_lr_scale}.")
        if freeze_backbone_epochs < 0:
            raise LitVisionError(f"model.freeze_backbone_epochs must be >= 0, got {freeze_backbone_epochs}.")
        self.net = build_resnet18(num_classes, weights, conv)
        self._backbone_frozen = False

    # ------------------------------------------------------------ optimiser
    def parameter_groups(self) -> list[dict]:
        """Backbone and head, each split into decayed kernels and undecayed biases/norms.
        Frozen backbone parameters are included too: they have no gradient while frozen
        (the optimiser skips them) and start learning when unfrozen."""
        wd, scale = self.hparams.weight_decay, self.hparams.backbone_lr_scale
        groups = {
            (True, True): {"params": [], "weight_decay": wd, "lr_scale": scale},
            (True, False): {"params": [], "weight_decay": 0.0, "lr_scale": scale},
            (False, True): {"params": [], "weight_decay": wd, "lr_scale": 1.0},
            (False, False): {"params": [], "weight_decay": 0.0, "lr_scale": 1.0},
        }
        for name, param in self.net.named_parameters():
            groups[(is_backbone(name), param.ndim > 1)]["params"].append(param)
        return list(groups.values())

    # -------------------------------------------------------------- freezing
    def set_backbone_frozen(self, frozen: bool) -> None:
        """Freeze (no gradients, BatchNorm in eval mode) or unfreeze the backbone."""
        self._backbone_frozen = frozen
        for name, param in self.net.named_parameters():
            if is_backbone(name):
                param.requires_grad_(not frozen)
        self.train(self.training)  # re-applies BatchNorm modes

    def train(self, mode: bool = True):
        # Lightning switches modes around validation; a frozen backbone's BatchNorm layers
        # must come back in eval mode, or their running statistics would drift.
        super().train(mode)
        if mode and getattr(self, "_backbone_frozen", False):
            for name, module in self.net.named_modules():
                if is_backbone(name) and isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.hparams.freeze_backbone_epochs
        if frozen != self._backbone_frozen:
            self.set_backbone_frozen(frozen)
            state = "frozen" if frozen else "unfrozen"
            self.print(f"ResNet18: backbone {state} at epoch {self.current_epoch}.")

    def on_train_end(self) -> None:
        if self._backbone_frozen:  # training stopped inside the frozen phase
            self.set_backbone_frozen(False)


__all__ = ["ResNet18"]
