"""`python -m lit_vision.models`: the table of this package's architectures (name, parameters at
100 classes with the default arguments, what it is), in Markdown, for the README; lines under it
say the counts are for 100 classes and how to train any of timm's architectures instead.

`python -m lit_vision.models timm [PATTERN]` lists timm's architectures matching PATTERN
(a shell-style pattern such as '*convnext*'; default: all), one per line.
"""

from __future__ import annotations

import inspect
import sys

from lit_vision.models.registry import create_model, list_models, list_wrappers


def architecture_table(num_classes: int = 100) -> str:
    """One Markdown row per built-in architecture, built at its default arguments, then a line
    on the wrappers of other libraries' architectures (timm)."""
    rows = [f"| `--model` | parameters ({num_classes} classes) | what it is |", "|---|---:|---|"]
    for name in list_models():
        model = create_model(name, num_classes=num_classes)
        parameters = sum(p.numel() for p in model.net.parameters())
        summary = inspect.getdoc(type(model)).splitlines()[0]
        rows.append(f"| {name} | {parameters:,} | {summary} |")
    standin = sum(p.numel() for p in create_model("SimpleNet", num_classes=10).net.parameters())
    rows.append("")
    rows.append(
        f"Parameters at {num_classes} classes (MiniPlaces) with the default arguments; the head follows "
        f"data.num_classes (SimpleNet on the 10-class stand-in: {standin:,})."
    )
    if "Timm" in list_wrappers():
        rows.append("")
        rows.append(
            "Any of timm's architectures: `--model Timm --model.init_args.name convnext_atto` (or "
            "`--model timm:convnext_atto`), `--model.init_args.pretrained true` for its pretrained weights; needs "
            "`pip install 'lit-vision[timm]'`. `python -m lit_vision.models timm '*convnext*'` lists timm's names."
        )
    return "\n".join(rows)


def timm_names(pattern: str = "") -> list[str]:
    from lit_vision.nets.timm_net import require_timm

    return require_timm().list_models(pattern or "*")


def main(argv: list[str]) -> int:
    if argv[:1] == ["timm"]:
        from lit_vision.errors import LitVisionError

        try:
            names = timm_names(argv[1] if len(argv) > 1 else "")
        except LitVisionError as error:
            print(f"python -m lit_vision.models: error: {error}", file=sys.stderr)
            return 2
        print("\n".join(names) if names else f"No timm architecture matches {argv[1]!r}.")
        return 0
    if argv:
        print(f"usage: python -m lit_vision.models [timm [PATTERN]] (got {' '.join(argv)!r})", file=sys.stderr)
        return 2
    print(architecture_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
