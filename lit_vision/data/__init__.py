"""MiniPlaces data: list parsing, JPEG dataset, transforms, download, generated stand-in, DataModule."""

from lit_vision.data.datamodule import MiniPlacesDataModule
from lit_vision.data.standin import generate_standin

__all__ = ["MiniPlacesDataModule", "generate_standin"]
