"""Real handwritten digits in MiniPlaces layout, for measuring on real images without a download.

    python -m lit_vision.data.digits data/digits [--size 32] [--val-share 0.2]
    lit-vision fit --config configs/quickstart_adv.yaml --data.data_dir data/digits --data.standin false

scikit-learn ships 1,797 real 8×8 grey digits scanned from 43 writers (`load_digits`). They are
upscaled (bilinear) to `size` pixels, made RGB and written as JPEGs with `train.txt`, `val.txt`
and `categories.txt` ("/z/zero 0" … "/n/nine 9"), so `MiniPlacesDataModule` reads them like
MiniPlaces (10 classes). The train/val split is stratified and fixed by `seed`. scikit-learn is
an optional extra (`pip install lit-vision[digits]`), imported only here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn import functional as F
from torchvision.io import encode_jpeg, write_file

from lit_vision.data.generated import generated_folder, reuse_generated
from lit_vision.errors import LitVisionError

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MARKER = "digits.json"


def load_digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """(images float [N, 8, 8] in [0, 1], labels [N]) from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise LitVisionError(
            "Writing the digits needs scikit-learn, which is not installed: "
            "pip install 'lit-vision[digits]' (or pip install scikit-learn)."
        ) from None
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32) / 16  # pixel values are 0..16
    return images, torch.as_tensor(digits.target, dtype=torch.long)


def split_indices(labels: torch.Tensor, val_share: float, seed: int) -> tuple[list[int], list[int]]:
    """A stratified split: each class gives round(val_share × its count) images to val."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in range(int(labels.max()) + 1):
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)].tolist()
        cut = round(val_share * len(members))
        val += members[:cut]
        train += members[cut:]
    return sorted(train), sorted(val)


def write_digits(root: str | Path, size: int = 32, val_share: float = 0.2, seed: int = 0) -> Path:
    """Write the digits to `root` unless identical ones are already there; return `root`.

    Built in a hidden sibling folder and renamed into place, so an interrupted run never leaves
    something that looks like a dataset."""
    if isinstance(size, bool) or int(size) != size or not 8 <= size <= 512:
        raise LitVisionError(f"--size must be an integer number of pixels in [8, 512], got {size}.")
    if not 0 < val_share < 1:
        raise LitVisionError(f"--val-share must lie strictly between 0 and 1, got {val_share}.")
    root = Path(root)
    settings = {"size": int(size), "val_share": float(val_share), "seed": int(seed)}
    if reuse_generated(root, MARKER, settings, "digits folder", "Choose a new folder."):
        return root
    images, labels = load_digit_images()
    train, val = split_indices(labels, val_share, seed)
    # Bilinear upscaling keeps the strokes smooth (nearest would give 8×8 blocks).
    large = F.interpolate(images[:, None], size=(size, size), mode="bilinear", align_corners=False)
    pixels = (large.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    with generated_folder(root, MARKER, settings) as staging:
        for split, indices in (("train", train), ("val", val)):
            lines = []
            for i in indices:
                name = DIGIT_NAMES[int(labels[i])]
                relative = f"{split}/{name[0]}/{name}/{i:05d}.jpg" if split == "train" else f"val/{i:05d}.jpg"
                path = staging / "images" / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                write_file(str(path), encode_jpeg(pixels[i].contiguous(), quality=95))
                lines.append(f"{relative} {int(labels[i])}")
            (staging / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (staging / "images" / "test").mkdir(parents=True)
        categories = [f"/{name[0]}/{name} {i}" for i, name in enumerate(DIGIT_NAMES)]
        (staging / "categories.txt").write_text("\n".join(categories) + "\n")
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_vision.data.digits", description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="folder to create (MiniPlaces layout)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--val-share", type=float, default=0.2, help="share of each class held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed of the train/val split")
    args = parser.parse_args(argv)
    try:
        root = write_digits(args.dir, args.size, args.val_share, args.seed)
    except LitVisionError as error:
        print(f"python -m lit_vision.data.digits: error: {error}", file=sys.stderr)
        sys.exit(2)
    train = len((root / "train.txt").read_text().splitlines())
    val = len((root / "val.txt").read_text().splitlines())
    print(f"{root}: {train} train + {val} val digits at {args.size} px, 10 classes")


if __name__ == "__main__":
    main()
