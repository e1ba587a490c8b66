"""lit_vision: MiniPlaces scene classification with PyTorch Lightning.

Run `lit-vision --help` (or `python -m lit_vision --help`) for the command line.
"""

__version__ = "0.1.0"
