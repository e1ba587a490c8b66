"""What the command line does for `--model Timm` (any of timm's architectures; `lit_vision.models.timm`):

- `--model timm:NAME` is shorthand for `--model Timm --model.init_args.name NAME`, expanded
  before jsonargparse reads the arguments, so everything after it applies as usual;
- an unset `model.init_args.img_size` becomes `data.crop_size`, so an architecture whose
  parameters depend on the input size (a ViT's position embedding) is built for the images the
  data delivers. Only for Timm: the built-in architectures keep their own defaults.
"""

from __future__ import annotations

from lit_vision.errors import LitVisionError

PREFIX = "timm:"
TIMM_CLASS_PATH = "lit_vision.models.Timm"


def expand_model_shorthand(args: list[str]) -> list[str]:
    """`args` with each `--model timm:NAME` / `--model=timm:NAME` spelled out."""
    expanded: list[str] = []
    i = 0
    while i < len(args):
        token = str(args[i])
        if token == "--model" and i + 1 < len(args) and str(args[i + 1]).startswith(PREFIX):
            value, i = str(args[i + 1]), i + 2
        elif token.startswith(f"--model={PREFIX}"):
            value, i = token.split("=", 1)[1], i + 1
        else:
            expanded.append(token)
            i += 1
            continue
        name = value[len(PREFIX) :].strip()
        if not name:
            raise LitVisionError(
                f"--model {value!r} names no architecture: expected --model timm:NAME with one of timm's names "
                "(e.g. timm:convnext_atto; `python -m lit_vision.models timm '*convnext*'` lists them)."
            )
        expanded += ["--model", "Timm", "--model.init_args.name", name]
    return expanded


def fill_timm_img_size(config) -> None:
    """Set an unset `model.init_args.img_size` of a Timm model to `data.crop_size` in `config`
    (a subcommand's parsed Namespace), in place."""
    model, data = config.get("model"), config.get("data")
    if model is None or data is None or model.get("class_path") != TIMM_CLASS_PATH:
        return
    init_args = model.get("init_args")
    if init_args is not None and init_args.get("img_size") is None and data.get("crop_size") is not None:
        init_args["img_size"] = data.get("crop_size")
