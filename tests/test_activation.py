"""SimpleNet's `activation` option: the smooth non-linearities adversarial training can choose,
reached from the command line, with the same parameters as the ReLU network (so a checkpoint's
weights load into either)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from lit_vision.errors import LitVisionError
from lit_vision.nets.simplenet import SimpleCNN

SMOOTH = {"silu": nn.SiLU, "gelu": nn.GELU, "softplus": nn.Softplus}


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_a_smooth_activation_replaces_every_relu_and_keeps_the_parameters(name):
    relu, smooth = SimpleCNN(num_classes=10), SimpleCNN(num_classes=10, activation=name)
    assert not any(isinstance(m, nn.ReLU) for m in smooth.modules())
    assert sum(isinstance(m, SMOOTH[name]) for m in smooth.modules()) == sum(isinstance(m, nn.ReLU) for m in relu.modules())
    smooth.load_state_dict(relu.state_dict())  # same names and shapes
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    smooth(images).sum().backward()
    # The reason to choose one: no unit's gradient is cut to exactly zero.
    assert images.grad.abs().gt(0).float().mean() > 0.99


def test_an_unknown_activation_names_the_choices():
    with pytest.raises(LitVisionError, match="activation must be one of relu, silu, gelu, softplus; got 'tanh'"):
        SimpleCNN(num_classes=10, activation="tanh")


def test_the_command_line_reaches_it(tmp_path):
    printed = subprocess.run(
        [sys.executable, "-m", "lit_vision", "fit", "--config", "configs/quickstart.yaml",
         "--model.init_args.activation", "silu", "--print_config"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "activation: silu" in printed
