"""A generated stand-in for MiniPlaces, written in exactly the real on-disk layout.

Scenes are drawn procedurally: sky and ground split by a tilted horizon, an object of some
shape and colour, texture, a distractor object, pixel noise. Each class is a combination
of attribute values (horizon height, object shape, palette) that it shares one by one
with other classes, so no single cue gives the class away, while the combination does:
learnable, not trivial. Deterministic from a seed; written once, atomically, and reused.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.io import encode_jpeg, write_file

from lit_vision import console
from lit_vision.data.generated import generated_folder, reuse_generated
from lit_vision.errors import LitVisionError

SCENE_NAMES = [
    "amber_field", "blue_lagoon", "coral_reef", "dusk_harbor", "emerald_hill",
    "frost_valley", "golden_mesa", "hazel_marsh", "ivory_coast", "jade_forest",
]  # fmt: skip
# Colours in [0, 1]; classes index into this palette with different strides.
PALETTE = torch.tensor(
    [
        [0.55, 0.75, 0.95], [0.95, 0.60, 0.35], [0.35, 0.65, 0.35], [0.80, 0.80, 0.45],
        [0.50, 0.40, 0.70], [0.85, 0.35, 0.40], [0.30, 0.50, 0.60], [0.70, 0.55, 0.40],
    ]
)  # fmt: skip
MARKER = "standin.json"
# The stand-in's own folder (configs/data/standin.yaml's data_dir, relative to the working
# directory): the one data_dir a run generates into without the folder existing first.
STANDIN_DIR = "data/standin"
STANDIN_HINT = "Point data.data_dir at an empty location for the stand-in, or set data.standin: false to read it."


def class_name(index: int) -> str:
    return SCENE_NAMES[index] if index < len(SCENE_NAMES) else f"scene_{index:03d}"


def _class_attributes(label: int) -> dict:
    """Mixed-radix digits of the label: each attribute value is shared by several classes."""
    return {
        "horizon": (0.35, 0.5, 0.65)[label % 3],
        "shape": (label // 3) % 4,  # disc, square, triangle, stripes
        "sky": PALETTE[(label * 3) % len(PALETTE)],
        "ground": PALETTE[(label * 5 + 2) % len(PALETTE)],
        "object": PALETTE[(label + label // 4 + 4) % len(PALETTE)],
        "texture": 6 + 4 * ((label // 12) % 4),
    }


def _shape_mask(shape: int, yy, xx, cy: float, cx: float, r: float) -> torch.Tensor:
    dy, dx = yy - cy, xx - cx
    if shape == 0:
        return dy**2 + dx**2 < r**2
    if shape == 1:
        return torch.maximum(dy.abs(), dx.abs()) < r * 0.85
    if shape == 2:
        return (dy > -r) & (dy < r) & (dx.abs() < (dy + r) * 0.6)
    stripes = torch.sin(xx * 2 * math.pi * 10) > 0
    return stripes & (dy.abs() < r) & (dx.abs() < r * 1.2)


def draw_scene(label: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """One uint8 [3, size, size] scene of class `label`."""

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=generator).item()

    attributes = _class_attributes(label)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    horizon = attributes["horizon"] + uniform(-0.12, 0.12) + uniform(-0.25, 0.25) * (xx - 0.5)
    ground = yy > horizon
    jitter = lambda: (torch.rand(3, 1, 1, generator=generator) - 0.5) * 0.35  # noqa: E731
    sky = attributes["sky"].view(3, 1, 1) + jitter() - 0.25 * yy
    earth = attributes["ground"].view(3, 1, 1) + jitter()
    earth = earth * (1 + 0.12 * torch.sin(yy * attributes["texture"] * 2 * math.pi + uniform(0, 6.3)))
    image = torch.where(ground, earth, sky)
    # A distractor of a random shape and colour, drawn first so the class object can cover it.
    if uniform(0, 1) < 0.7:
        other = int(uniform(0, 4))
        mask = _shape_mask(other, yy, xx, uniform(0.2, 0.8), uniform(0.15, 0.85), uniform(0.08, 0.18))
        colour = PALETTE[int(uniform(0, len(PALETTE)))].view(3, 1, 1)
        image = torch.where(mask, colour, image)
    mask = _shape_mask(
        attributes["shape"], yy, xx, uniform(0.3, 0.7), uniform(0.25, 0.75), uniform(0.12, 0.22)
    )
    image = torch.where(mask, attributes["object"].view(3, 1, 1) + jitter(), image)
    image = image * uniform(0.75, 1.2) + torch.randn(3, size, size, generator=generator) * 0.1
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def generate_standin_for_run(
    root: str | Path, num_classes: int, train_per_class: int, val_per_class: int, test_images: int, image_size: int
) -> Path:
    """`data.standin: true`: reuse the stand-in at `root`, or generate it there when `root` is
    the stand-in's own folder (STANDIN_DIR) or an empty folder the user made. Any other absent
    `root` is most likely a mistyped path, which must not silently become a new dataset."""
    root = Path(root)
    if not root.exists() and root.resolve() != Path(STANDIN_DIR).resolve():
        raise LitVisionError(
            f"data.data_dir {root} does not exist. With data.standin: true a stand-in is generated only into "
            f"{STANDIN_DIR} (the folder configs/data/standin.yaml names) or into an empty folder you created "
            f"(mkdir -p {root}), so that a mistyped path does not become a new dataset. To train on your own data "
            "there, fix the path and set data.standin: false (expected: images/{train,val,test}/, train.txt and "
            "val.txt in MiniPlaces layout)."
        )
    return generate_standin(root, num_classes, train_per_class, val_per_class, test_images, image_size)


def generate_standin(
    root: str | Path,
    num_classes: int = 10,
    train_per_class: int = 300,
    val_per_class: int = 50,
    test_images: int = 200,
    image_size: int = 128,
    seed: int = 0,
) -> Path:
    """Write the stand-in to `root` unless an identical one is already there; return `root`.

    It is built in a temporary sibling folder and renamed into place, so an interrupted run
    never leaves something that looks like a dataset, and when several processes start at
    once exactly one rename wins and the others reuse its result.
    """
    root = Path(root)
    settings = dict(
        num_classes=num_classes, train_per_class=train_per_class, val_per_class=val_per_class,
        test_images=test_images, image_size=image_size, seed=seed,
    )  # fmt: skip
    if reuse_generated(root, MARKER, settings, "stand-in", STANDIN_HINT):
        return root
    total = num_classes * (train_per_class + val_per_class) + test_images
    console.say(
        f"generating a stand-in dataset into {root}: "
        f"{total:,} {image_size}-px JPEGs ({num_classes} classes × {train_per_class} train + {val_per_class} val, "
        f"{test_images} test), once; later runs reuse it."
    )
    with generated_folder(root, MARKER, settings) as staging:
        _write(staging, settings)
    return root


def _write(staging: Path, settings: dict) -> None:
    generator = torch.Generator().manual_seed(settings["seed"])
    size, num_classes = settings["image_size"], settings["num_classes"]
    images = staging / "images"

    def save(relative: str, label: int) -> None:
        path = images / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(str(path), encode_jpeg(draw_scene(label, size, generator), quality=90))

    train_lines = []
    for label in range(num_classes):
        name = class_name(label)
        for i in range(settings["train_per_class"]):
            relative = f"train/{name[0]}/{name}/{i + 1:08d}.jpg"
            save(relative, label)
            train_lines.append(f"{relative} {label}")
    val_labels = torch.arange(num_classes).repeat_interleave(settings["val_per_class"])
    val_labels = val_labels[torch.randperm(len(val_labels), generator=generator)].tolist()
    val_lines = []
    for i, label in enumerate(val_labels):
        relative = f"val/{i + 1:08d}.jpg"
        save(relative, label)
        val_lines.append(f"{relative} {label}")
    for i in range(settings["test_images"]):
        save(f"test/{i + 1:08d}.jpg", int(torch.randint(num_classes, (), generator=generator)))
    (staging / "train.txt").write_text("\n".join(train_lines) + "\n")
    (staging / "val.txt").write_text("\n".join(val_lines) + "\n")
    categories = [f"/{class_name(i)[0]}/{class_name(i)} {i}" for i in range(num_classes)]
    (staging / "categories.txt").write_text("\n".join(categories) + "\n")
