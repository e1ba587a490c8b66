"""`--model Timm --model.init_args.name convnext_atto` (or `--model timm:convnext_atto`): any of
timm's architectures as a LightningModule, with everything the built-in ones have (adversarial
training and evaluation, TTA, export, resume, compile).

What differs from a built-in architecture, and why:
- the input normalisation (the model's first operation) uses the mean/std of the architecture's
  pretrained configuration, so pixel-space inputs stay the contract (an attack's ε is in pixel
  units) and pretrained weights see the statistics they were trained with;
- `num_classes` comes from the data, as for every model; for architectures whose parameters
  depend on the input size (ViTs, Swin...) `img_size` defaults to the data's `crop_size` (the
  CLI fills it in) and a mismatch with the data is an error;
- weights: random (default), `pretrained: true` (the hub), or `pretrained_file` (local); the
  new head learns at `lr`, the pretrained backbone at `backbone_lr_scale × lr`, as ResNet18's
  fine-tuning does. A checkpoint holds every weight, so what a run saves says `pretrained:
  false` (with the resolved learning-rate factor): validate/test/predict/export/resume from it
  never download anything.
The network itself is built by lit_vision.nets.timm_net (plain torch + timm).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_vision.errors import LitVisionError
from lit_vision.models.classifier import ImageClassifier
from lit_vision.models.registry import register_model
from lit_vision.nets.layers import Normalize
from lit_vision.nets.timm_net import build_timm_net, fixed_input_size, head_parameter_names, normalization
from lit_vision.utils.param_groups import no_weight_decay_names, weight_decay_groups

# The factor a pretrained backbone's learning rate gets by default (ResNet18's fine-tuning value).
PRETRAINED_BACKBONE_LR_SCALE = 0.1


@register_model
class Timm(ImageClassifier):
    """Any timm architecture (model.init_args.name), normalised as its pretrained weights expect."""

    # Not one of this package's own architectures: `python -m lit_vision.models` and the suite
    # that runs every built-in list it apart (see lit_vision.models.registry).
    library = "timm"

    def build_net(
        self,
        num_classes: int = 100,
        name: str = "resnet18",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        img_size: int | None = None,
        backbone_lr_scale: float | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        timm_kwargs: dict[str, Any] | None = None,
    ) -> nn.Module:
        """
        Args:
            num_classes: classes of the new head (from the data).
            name: a timm architecture, optionally with a weights tag (`resnet18`,
                `convnext_atto`, `vit_tiny_patch16_224`, `resnet18.a1_in1k`);
                `timm.list_models('*pattern*')` lists them.
            pretrained: start from the architecture's pretrained weights, fetched from the
                Hugging Face hub (cached; offline, an error says how to provide them).
            pretrained_file: start from the weights in this local file instead (timm's
                model.safetensors / pytorch_model.bin, or torch.save(model.state_dict())).
                The file's classifier is replaced when its class count differs.
            img_size: input side for architectures with a fixed input size (ViTs, Swin...);
                None: the data's crop_size (other architectures take any size).
            backbone_lr_scale: the backbone learns at `lr × backbone_lr_scale`, the head at
                `lr`. None: 0.1 with pretrained weights, 1.0 from random initialisation.
            drop_rate: dropout before the classifier.
            drop_path_rate: stochastic depth (architectures that have it).
            timm_kwargs: more arguments for the architecture's constructor (e.g. `depth: 4`).
        """
        if backbone_lr_scale is not None and backbone_lr_scale < 0:
            raise LitVisionError(f"model.init_args.backbone_lr_scale must be >= 0, got {backbone_lr_scale}.")
        if img_size is not None and img_size < 1:
            raise LitVisionError(f"model.init_args.img_size must be a positive integer, got {img_size}.")
        if pretrained and pretrained_file is not None:
            raise LitVisionError(
                "model.init_args.pretrained (the hub) and model.init_args.pretrained_file (a local file) both ask for "
                f"weights; keep one (pretrained_file is {pretrained_file!r})."
            )
        starts_pretrained = pretrained or pretrained_file is not None
        if backbone_lr_scale is None:
            backbone_lr_scale = PRETRAINED_BACKBONE_LR_SCALE if starts_pretrained else 1.0
        self.backbone_lr_scale = backbone_lr_scale
        self.timm_name = name  # hparams hold only the arguments given, not the defaults
        # The architecture's own statistics replace the ImageNet default the base class set.
        self.normalize = Normalize(*normalization(name))
        return build_timm_net(
            name, num_classes, pretrained=pretrained, pretrained_file=pretrained_file, img_size=img_size,
            drop_rate=drop_rate, drop_path_rate=drop_path_rate, timm_kwargs=timm_kwargs,
        )  # fmt: skip

    # ------------------------------------------------------------------ data
    def setup(self, stage: str) -> None:
        super().setup(stage)
        crop = getattr(getattr(getattr(self.trainer, "datamodule", None), "hparams", None), "crop_size", None)
        size = self.input_size()
        if crop is not None and size is not None and crop != size:
            raise LitVisionError(
                f"timm {self.timm_name} takes {size}×{size} images (model.init_args.img_size) but the data's crop "
                f"is {crop}×{crop} (data.crop_size): set model.init_args.img_size to {crop}, or leave it unset to "
                "follow the data."
            )

    def input_size(self) -> int | None:
        """The image side the network is built for, or None when it takes any size."""
        if not fixed_input_size(self.timm_name):
            return None
        size = self.hparams.get("img_size") or getattr(getattr(self.net, "patch_embed", None), "img_size", None)
        if size is None:
            size = self.net.pretrained_cfg.get("input_size", (3, None, None))[1:]
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        return int(size[0]) if size[0] is not None and size[0] == size[-1] else None

    # ------------------------------------------------------------- optimiser
    def parameter_groups(self) -> list[dict]:
        """Backbone (at `backbone_lr_scale × lr`) and head (at `lr`), each split into decayed
        kernels and undecayed biases, norms and what timm's `no_weight_decay()` names."""
        wd, skip = self.hparams.weight_decay, no_weight_decay_names(self.net)
        head_names = head_parameter_names(self.net)
        named = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        backbone = [(n, p) for n, p in named if n not in head_names]
        head = [(n, p) for n, p in named if n in head_names]
        return weight_decay_groups(backbone, wd, skip, lr_scale=self.backbone_lr_scale) + weight_decay_groups(
            head, wd, skip, lr_scale=1.0
        )

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        saved = checkpoint.get("hyper_parameters")
        if saved is None:
            return
        # Every weight is in the checkpoint: rebuilding from it must not fetch (or need) the
        # initial weights again, and the learning-rate factor they implied stays as resolved.
        started_from = "hub" if saved.get("pretrained") else saved.get("pretrained_file")
        saved["pretrained"], saved["pretrained_file"] = False, None
        saved["name"] = self.timm_name
        saved["backbone_lr_scale"] = self.backbone_lr_scale
        if started_from:
            checkpoint.setdefault("timm_initial_weights", started_from)


__all__ = ["Timm"]
