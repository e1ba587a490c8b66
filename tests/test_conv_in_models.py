"""The hand-written convolution inside a whole model: SimpleNet trains identically with either
convolution, and a checkpoint written with one evaluates identically with the other.

Small images (32x32), 10 classes and a handful of steps keep this file to a few seconds on a
2-core CPU.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


from lit_vision.errors import LitVisionError
from lit_vision.models.simplenet import SimpleNet
from lit_vision.nets.simplenet import SimpleCNN
from lit_vision.ops.conv import HandWrittenConv2d, choose_algorithm

NUM_CLASSES, SIZE, BATCH = 10, 32, 8


def _batches(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.rand(BATCH, 3, SIZE, SIZE, generator=generator),
            torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator),
        )
        for _ in range(count)
    ]


def test_hand_written_conv_is_used() -> None:
    net = SimpleCNN(NUM_CLASSES, conv="hand_written")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(isinstance(m, HandWrittenConv2d) for m in convs)


def test_the_im2col_recipe_runs_im2col_on_every_device() -> None:
    """configs/simplenet_im2col.yaml names the algorithm: no layer falls to "auto"'s choice
    (shifted GEMMs on the CPU, implicit-GEMM kernels on CUDA)."""
    recipe = Path(__file__).resolve().parent.parent / "configs" / "simplenet_im2col.yaml"
    net = SimpleCNN(NUM_CLASSES, **yaml.safe_load(recipe.read_text())["model"]["init_args"])
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(isinstance(m, HandWrittenConv2d) for m in convs)
    for conv in convs:
        for device in ("cpu", "cuda"):
            assert choose_algorithm(conv.algorithm, conv.kernel_size, conv.stride, conv.padding, torch.float32, device) == "im2col"


def test_the_earlier_spelling_warns_and_builds_the_same_net() -> None:
    with pytest.warns(FutureWarning, match="conv: im2col is the earlier name of conv: hand_written"):
        net = SimpleCNN(NUM_CLASSES, conv="im2col")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(isinstance(m, HandWrittenConv2d) and m.algorithm == "auto" for m in convs)
    with pytest.raises(LitVisionError, match="conv_algorithm 'im2col' is for conv: hand_written"):
        SimpleCNN(NUM_CLASSES, conv="torch", conv_algorithm="im2col")


def test_same_losses_over_sgd_steps() -> None:
    """Same initial weights, same batches: the two convolutions give the same training run."""
    torch.manual_seed(0)
    reference = SimpleCNN(NUM_CLASSES, conv="torch")
    ours = SimpleCNN(NUM_CLASSES, conv="hand_written")
    ours.load_state_dict(reference.state_dict())
    optimizers = [torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9) for net in (reference, ours)]

    losses: dict[str, list[float]] = {"torch": [], "hand_written": []}
    for images, labels in _batches(5, seed=1):
        for key, net, optimizer in zip(losses, (reference, ours), optimizers):
            optimizer.zero_grad()
            loss = F.cross_entropy(net(images), labels)
            loss.backward()
            optimizer.step()
            losses[key].append(loss.item())

    torch.testing.assert_close(losses["hand_written"], losses["torch"], rtol=1e-4, atol=1e-5)
    # The weights moved (the test is not vacuous) and moved the same way.
    for (name, p_ref), p_ours in zip(reference.named_parameters(), ours.parameters()):
        torch.testing.assert_close(p_ours, p_ref, rtol=1e-3, atol=1e-5, msg=name)


def _trainer(root, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


@pytest.mark.parametrize("trained_with,evaluated_with", [("torch", "hand_written"), ("hand_written", "torch")])
def test_checkpoint_cross_loads(tmp_path, trained_with: str, evaluated_with: str) -> None:
    """A checkpoint trained with one convolution loads with the other and validates the same."""
    torch.manual_seed(0)
    train = DataLoader(TensorDataset(*map(torch.cat, zip(*_batches(3, seed=2)))), batch_size=BATCH)
    val = DataLoader(TensorDataset(*map(torch.cat, zip(*_batches(2, seed=3)))), batch_size=BATCH)

    model = SimpleNet(num_classes=NUM_CLASSES, conv=trained_with, optimizer="adamw", lr=1e-3, warmup_epochs=0)
    trainer = _trainer(tmp_path, max_epochs=1)  # 3 steps
    trainer.fit(model, train)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    expected = _trainer(tmp_path).validate(model, val, verbose=False)[0]
    loaded = SimpleNet.load_from_checkpoint(path, conv=evaluated_with)
    kind = HandWrittenConv2d if evaluated_with == "hand_written" else torch.nn.Conv2d
    assert all(type(m) is kind for m in loaded.modules() if isinstance(m, torch.nn.Conv2d))
    got = _trainer(tmp_path).validate(loaded, val, verbose=False)[0]

    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
