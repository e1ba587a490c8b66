"""Training options, each set through the CLI and checked for its effect on a tiny CPU run:
bf16 runs the forward in bfloat16, channels_last changes the memory format, label smoothing
changes the loss to the smoothed value, gradient clipping bounds the gradient norm, EMA
validates weights that differ from the raw ones, and compile keeps clean checkpoint keys.

Each run is built by the CLI (`build_cli(..., run=False)`: the option goes through the
same parsing as `lit-vision fit`), then fitted for two steps with a probe callback."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.nn import functional as F

from lit_vision.cli import build_cli
from lit_vision.models import SimpleNet

# Each option is checked on a real (tiny) CLI fit.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")]


class Probe(L.Callback):
    """Records, per training step: the network's input and output, the batch labels, the
    step's loss, and the gradient norm before clipping and at the optimiser step."""

    def __init__(self) -> None:
        self.inputs, self.logits, self.labels, self.losses = [], [], [], []
        self.norms_before_clip, self.norms_at_step = [], []

    def on_fit_start(self, trainer, module) -> None:
        module.net.register_forward_hook(self._record_forward)

    def on_train_start(self, trainer, module) -> None:
        # Lightning runs forward and backward inside `optimizer.step(closure)` and clips after
        # `on_before_optimizer_step`; the gradients the step used are still there after it.
        trainer.optimizers[0].register_step_post_hook(lambda *_: self.norms_at_step.append(grad_norm(module)))

    def _record_forward(self, net, args, output) -> None:
        if net.training:
            self.inputs.append(args[0].detach())
            self.logits.append(output.detach())

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.labels.append(batch[1].clone())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach())

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        self.norms_before_clip.append(grad_norm(module))


def grad_norm(module) -> float:
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters() if p.grad is not None])).item()


def fit_with_probe(tiny_config, *options: str) -> tuple[L.LightningModule, Probe]:
    cli = build_cli(
        ["--config", str(tiny_config), "--trainer.max_steps", "2", "--trainer.logger", "false",
         "--trainer.enable_checkpointing", "false", "--trainer.num_sanity_val_steps", "0",
         "--trainer.limit_val_batches", "0", *options],
        run=False,
    )  # fmt: skip
    probe = Probe()
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli.model, probe


def test_bf16_runs_the_forward_in_bfloat16(tiny_config, run_cli):
    _, probe = fit_with_probe(tiny_config, "--trainer.precision", "bf16-mixed")
    assert probe.logits and all(logits.dtype == torch.bfloat16 for logits in probe.logits)
    _, plain = fit_with_probe(tiny_config)
    assert all(logits.dtype == torch.float32 for logits in plain.logits)  # the check can fail


def test_channels_last_changes_weights_and_activations(tiny_config, run_cli):
    model, probe = fit_with_probe(tiny_config, "--model.init_args.channels_last", "true")
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not any(c.weight.is_contiguous() for c in convs)  # NHWC, not the default NCHW
    assert all(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() for x in probe.inputs)
    # Without the option the weights stay NCHW (CPU runs get channels-last *inputs* from the
    # DataModule either way, so the weights are what tells the option apart).
    plain, _ = fit_with_probe(tiny_config)
    assert all(m.weight.is_contiguous() for m in plain.net.modules() if isinstance(m, torch.nn.Conv2d))


def test_label_smoothing_gives_the_smoothed_loss(tiny_config, run_cli):
    _, probe = fit_with_probe(tiny_config, "--model.init_args.label_smoothing", "0.2")
    for logits, labels, loss in zip(probe.logits, probe.labels, probe.losses):
        smoothed = F.cross_entropy(logits, labels, label_smoothing=0.2)
        torch.testing.assert_close(loss, smoothed)
        # Near-uniform logits of a fresh net make the two close, but far outside the tolerance
        # above: a loss without smoothing would fail the comparison.
        assert abs(loss.item() - F.cross_entropy(logits, labels).item()) > 1e-5


def test_gradient_clipping_bounds_the_gradient_norm(tiny_config, run_cli):
    _, probe = fit_with_probe(
        tiny_config, "--trainer.gradient_clip_val", "0.01", "--trainer.gradient_clip_algorithm", "norm"
    )
    assert len(probe.norms_at_step) == 2
    assert all(before > 0.05 for before in probe.norms_before_clip)  # clipping had work to do
    assert all(norm <= 0.01 * (1 + 1e-3) for norm in probe.norms_at_step), probe.norms_at_step


def test_ema_weights_are_validated_and_saved(run_cli, tiny_config, tmp_path):
    code = run_cli(
        "fit", "--config", tiny_config,
        "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
        "--trainer.callbacks.decay", "0.5",
    )  # fmt: skip
    assert code == 0
    (path,) = (tmp_path / "checkpoints").rglob("last.ckpt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # Lightning's EMA callback stores the average as the state dict (what validation used)
    # and the raw weights beside it, so a resumed run continues from the raw ones.
    assert set(checkpoint["state_dict"]) == set(SimpleNet(num_classes=4).state_dict())
    raw, average = checkpoint["current_model_state"], checkpoint["state_dict"]
    assert any(not torch.equal(raw[k], average[k]) for k in average)


@pytest.mark.parametrize(
    "options", [["--data.augment_on", "worker"], ["--data.cache", "true"]], ids=["augment_on_worker", "cache"]
)
def test_data_option_trains_on_cpu(run_cli, tiny_config, tmp_path, options):
    extra = ["--data.cache_dir", str(tmp_path / "cache")] if "--data.cache" in options else []
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_steps", "2", *options, *extra) == 0
    if extra:
        assert any((tmp_path / "cache").iterdir())  # the cache was written and used


@pytest.mark.slow
def test_compile_trains_and_keeps_clean_checkpoint_keys(run_cli, tiny_config, tmp_path):
    code = run_cli(
        "fit", "--config", tiny_config, "--model.init_args.compile", "true", "--model.init_args.channels_last", "true",
    )  # fmt: skip
    assert code == 0
    (path,) = (tmp_path / "checkpoints").rglob("last.ckpt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert set(checkpoint["state_dict"]) == set(SimpleNet(num_classes=4).state_dict())
    assert checkpoint["hyper_parameters"]["compile"] is True
    # The checkpoint rebuilds an (uncompiled until a trainer runs it) model on its own.
    model = SimpleNet.load_from_checkpoint(path, map_location="cpu")
    assert model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 4)
