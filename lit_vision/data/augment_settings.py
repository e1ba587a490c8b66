"""`Augmentation`: the training augmentation's settings, one definition for every path.

The DataModule takes it as `data.augmentation` (YAML: `data: {augmentation: {degrees: 0}}`,
command line: `--data.augmentation.degrees 0`); the per-image torchvision v2 pipeline
(`transforms.train_transform`) and the batched one (`BatchAugment`, on the device or in the
loader workers) both read it, so every path draws from the same distribution:

    horizontal flip -> rotation about the centre (zero fill) -> random resized crop
    (area a fraction `scale` of the square training image, aspect w/h log-uniform in
    `ratio`) to `crop_size` -> random crop of `crop_size` from the result padded with `padding`
    zero pixels on every side (CIFAR's standard pad-4 crop) -> per-channel gain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lit_vision.errors import LitVisionError


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation (the same on every path of `data.augment_on`).

    Args:
        flip: flip each image horizontally with probability 0.5.
        degrees: rotation angle drawn uniformly from [-degrees, degrees] (degrees, 0 to 180).
        scale: range of the crop's area as a fraction of the training image's area (0 < low <= high <= 1).
        ratio: range of the crop's aspect ratio width/height, drawn log-uniformly (0 < low <= high).
        gain: each colour channel is multiplied by its own factor from [1 - gain, 1 + gain] (0 to 1).
        padding: pad the crop with this many zero pixels on every side, then take a random
            crop_size square of it (a shift of up to `padding` pixels each way); 0: off.
    """

    flip: bool = True
    degrees: float = 15.0
    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (0.8, 1.2)
    gain: float = 0.15
    padding: int = 0

    def __post_init__(self) -> None:
        # jsonargparse hands tuples over as lists; keep them tuples so settings compare equal.
        for name in ("scale", "ratio"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise LitVisionError(f"data.augmentation.{name} must be a pair [low, high], got {value!r}.")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise LitVisionError(
                f"data.augmentation.scale must satisfy 0 < low <= high <= 1 (fractions of the image's area), "
                f"got [{low}, {high}]."
            )
        low, high = self.ratio
        if not 0 < low <= high:
            raise LitVisionError(f"data.augmentation.ratio must satisfy 0 < low <= high (width/height), got [{low}, {high}].")
        if not 0 <= self.degrees <= 180:
            raise LitVisionError(f"data.augmentation.degrees must lie in [0, 180], got {self.degrees}.")
        if not (isinstance(self.padding, int) and self.padding >= 0):
            raise LitVisionError(f"data.augmentation.padding must be a whole number of pixels >= 0, got {self.padding!r}.")
        if not 0 <= self.gain <= 1:
            raise LitVisionError(f"data.augmentation.gain must lie in [0, 1], got {self.gain}.")

    def as_plain_dict(self) -> dict:
        """Plain types only: checkpoints load with `weights_only=True`, which refuses classes."""
        return {**asdict(self), "scale": list(self.scale), "ratio": list(self.ratio)}
