"""The one list of architectures: `register_model` adds a LightningModule class under its
class name, `list_models()` names them, `create_model(name, **kwargs)` builds one.

The CLI's `--model NAME`, the test suite (tests/test_architectures.py runs every registered
architecture) and the README table (`python -m lit_vision.models`) all read this list, so an
architecture is added by writing its class and decorating it with `@register_model`.

A class with a `library` attribute (`Timm`: `library = "timm"`) wraps another library's
architectures: `--model` accepts it, but `list_models()` names only this package's own
architectures (each has fixed defaults, a row in the README table and a place in the suite that
runs every one); `list_wrappers()` names the wrappers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from lit_vision.errors import LitVisionError

if TYPE_CHECKING:
    from lit_vision.models.classifier import ImageClassifier

ModelClass = TypeVar("ModelClass", bound=type)

_MODELS: dict[str, type[ImageClassifier]] = {}


def register_model(cls: ModelClass) -> ModelClass:
    """Class decorator: make `cls` selectable as `--model <class name>`."""
    name = cls.__name__
    if name in _MODELS and _MODELS[name] is not cls:
        raise ValueError(f"Two architectures are registered as {name!r}: {_MODELS[name]} and {cls}.")
    _MODELS[name] = cls
    return cls


def list_models() -> list[str]:
    """Names of this package's own architectures, in the order they were registered."""
    return [name for name, cls in _MODELS.items() if getattr(cls, "library", None) is None]


def list_wrappers() -> dict[str, str]:
    """{class name: library} of the registered classes that wrap another library's architectures."""
    return {name: cls.library for name, cls in _MODELS.items() if getattr(cls, "library", None) is not None}


def model_class(name: str) -> type[ImageClassifier]:
    """The registered class called `name`; an unknown name is an error that lists the known ones."""
    try:
        return _MODELS[name]
    except KeyError:
        raise LitVisionError(
            f"Unknown model {name!r} (--model): expected one of {', '.join(list_models())}; any timm architecture "
            "as --model Timm --model.init_args.name NAME (or --model timm:NAME); or the dotted class path of an "
            "ImageClassifier subclass."
        ) from None


def create_model(name: str, **kwargs) -> ImageClassifier:
    """Build the registered architecture `name` with `kwargs` (its arguments and the classifier's)."""
    return model_class(name)(**kwargs)
