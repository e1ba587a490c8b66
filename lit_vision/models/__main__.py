"""`python -m lit_vision.models`: the table of registered architectures (name, parameters at
100 classes with the default arguments, what it is), in Markdown, for the README; a line under
it says the counts are for 100 classes."""

from __future__ import annotations

import inspect

from lit_vision.models import create_model, list_models


def architecture_table(num_classes: int = 100) -> str:
    """One Markdown row per registered architecture, built at its default arguments."""
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
    return "\n".join(rows)


if __name__ == "__main__":
    print(architecture_table())
