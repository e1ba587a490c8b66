"""A value checked against the choices its `Literal` type states: one helper, one error.

Constructors state their choices once, as `Literal[...]` annotations (LightningCLI reads them for
`--help` and parsing). A direct Python call, a test or a checkpoint's saved value reaches the
constructor without the parser, so it checks with `check_choice(value, TheLiteral, "Owner.arg")`,
and the error lists the choices the type states: nothing to keep in step by hand.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from lit_vision.errors import LitVisionError


def choices_of(annotation: Any) -> tuple:
    """The values a `Literal` allows; a Union (or `X | None`) of Literals and None allows each
    of its members' values."""
    origin = get_origin(annotation)
    if origin is Literal:
        return get_args(annotation)
    if origin is Union or origin is types.UnionType:
        return tuple(value for member in get_args(annotation) for value in choices_of(member))
    if annotation is type(None):
        return (None,)
    raise TypeError(f"{annotation!r} is not a Literal (or a Union of Literals and None)")


def check_choice(value: Any, annotation: Any, name: str) -> Any:
    """`value` if `annotation` (a Literal) allows it, else a LitVisionError naming `name`, the
    value and every choice. Types count: True is not 1, "1" is not 1."""
    choices = choices_of(annotation)
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise LitVisionError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}.")
    return value
