"""`--model ResNet18`: fine-tuning torchvision's ResNet18 (random initialisation unless
`weights` names ImageNet's or a file; configs/resnet18_finetune.yaml asks for ImageNet's).

Fine-tuning knobs: the backbone learns at `backbone_lr_scale × lr` while the new head
learns at `lr`; `freeze_backbone_epochs` keeps the backbone fixed (parameters frozen,
BatchNorm statistics too) for the first N epochs so the random head can settle first.
"""

from __future__ import annotations

from torch import nn

from lit_vision.errors import LitVisionError
from lit_vision.models.classifier import ImageClassifier
from lit_vision.models.registry import register_model
from lit_vision.nets.resnet import build_resnet18, is_backbone
from lit_vision.utils.param_groups import no_weight_decay_names, weight_decay_groups


@register_model
class ResNet18(ImageClassifier):
    """torchvision ResNet18 with a new head, a slower backbone and an optional frozen start."""

    def build_net(self, backbone_lr_scale: float = 0.1, freeze_backbone_epochs: int = 0, **net_args) -> nn.Module:
        """
        The fine-tuning knobs are declared here, beside the network's own arguments, because
        LightningCLI reads an architecture's arguments through this method.

        Args:
            backbone_lr_scale: the backbone's learning rate is `lr × backbone_lr_scale`
                (the head's is `lr`).
            freeze_backbone_epochs: train only the head for this many first epochs; the
                backbone's BatchNorm layers stay in eval mode meanwhile. Under DDP this needs
                `strategy: ddp_find_unused_parameters_true`.
        """
        if backbone_lr_scale < 0:
            raise LitVisionError(f"model.backbone_lr_scale must be >= 0, got {backbone_lr_scale}.")
        if freeze_backbone_epochs < 0:
            raise LitVisionError(f"model.freeze_backbone_epochs must be >= 0, got {freeze_backbone_epochs}.")
        self.backbone_lr_scale = backbone_lr_scale
        self.freeze_backbone_epochs = freeze_backbone_epochs
        self._backbone_frozen = False
        return build_resnet18(**net_args)

    # ------------------------------------------------------------ optimiser
    def parameter_groups(self) -> list[dict]:
        """Backbone and head, each split into decayed kernels and undecayed biases/norms.
        Frozen backbone parameters are included too: they have no gradient while frozen
        (the optimiser skips them) and start learning when unfrozen."""
        wd, skip = self.hparams.weight_decay, no_weight_decay_names(self.net)
        named = list(self.net.named_parameters())
        backbone = [(n, p) for n, p in named if is_backbone(n)]
        head = [(n, p) for n, p in named if not is_backbone(n)]
        return weight_decay_groups(backbone, wd, skip, lr_scale=self.backbone_lr_scale) + weight_decay_groups(
            head, wd, skip, lr_scale=1.0
        )

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
        frozen = self.current_epoch < self.freeze_backbone_epochs
        if frozen != self._backbone_frozen:
            self.set_backbone_frozen(frozen)
            state = "frozen" if frozen else "unfrozen"
            self.print(f"ResNet18: backbone {state} at epoch {self.current_epoch}.")

    def on_train_end(self) -> None:
        if self._backbone_frozen:  # training stopped inside the frozen phase
            self.set_backbone_frozen(False)


__all__ = ["ResNet18"]
