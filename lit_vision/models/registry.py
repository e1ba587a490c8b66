"""The one list of architectures: `register_model` adds a LightningModule class under its
class name, `list_models()` names them, `create_model(name, **kwargs)` builds one.

The CLI's `--model NAME`, the test suite (tests/test_architectures.py runs every registered
architecture) and the README table (`python -m lit_vision.models`) all read this list, so an
architecture is added by writing its class and decorating it with `@register_model`.
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
    """Names of the registered architectures, in the order they were registered."""
    return list(_MODELS)


def model_class(name: str) -> type[ImageClassifier]:
    """The registered class called `name`; an unknown name is an error that lists the known ones."""
    try:
        return _MODELS[name]
    except KeyError:
        raise LitVisionError(
            f"Unknown model {name!r} (--model): expected one of {', '.join(list_models())}, or the dotted class "
            "path of an ImageClassifier subclass."
        ) from None


def create_model(name: str, **kwargs) -> ImageClassifier:
    """Build the registered architecture `name` with `kwargs` (its arguments and the classifier's)."""
    return model_class(name)(**kwargs)
