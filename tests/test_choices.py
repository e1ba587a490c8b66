"""Choices are checked from their Literal type, by one helper with one error: constructors
name themselves and the argument, and list exactly the choices the type states."""

from __future__ import annotations

from typing import Literal, Optional

import pytest

from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.callbacks.adversarial_validation import AdversarialValidation
from lit_vision.errors import LitVisionError
from lit_vision.nets.simplenet import SimpleCNN
from lit_vision.ops.attention import MultiHeadSelfAttention
from lit_vision.utils.choices import check_choice, choices_of


def test_choices_come_from_the_type():
    assert choices_of(Literal["a", "b"]) == ("a", "b")
    assert choices_of(Optional[Literal[1, 2]]) == (1, 2, None)
    assert choices_of(Literal["a"] | Literal["b"] | None) == ("a", "b", None)
    assert check_choice("b", Literal["a", "b"], "x") == "b"
    with pytest.raises(LitVisionError, match=r"^Thing.mode must be one of fast, slow; got 'medium'\.$"):
        check_choice("medium", Literal["fast", "slow"], "Thing.mode")
    with pytest.raises(LitVisionError, match="got True"):
        check_choice(True, Literal[1, 2], "x")  # True == 1, but it is not the choice 1
    with pytest.raises(TypeError):
        choices_of(str)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: AdversarialTraining(objective="tradez"), "AdversarialTraining objective must be one of mix, trades; got 'tradez'"),
        (lambda: AdversarialTraining(target="most_likely"),
         "AdversarialTraining target must be one of least_likely, true_label; got 'most_likely'"),
        (lambda: AdversarialValidation(on_collapse="panic"),
         "AdversarialValidation on_collapse must be one of warn, stop, restore; got 'panic'"),
        (lambda: MultiHeadSelfAttention(8, 2, impl="flash"), "attention must be one of manual, sdpa; got 'flash'"),
        (lambda: SimpleCNN(4, conv="winograd"), "conv must be one of torch, hand_written, im2col; got 'winograd'"),
    ],
)
def test_constructors_name_themselves_and_every_choice(build, message):
    with pytest.raises(LitVisionError, match=message):
        build()
