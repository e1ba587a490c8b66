"""`lit-vision export`: every architecture in every format gives the model's logits after a
round trip through the file, at batch sizes other than the traced one; TTA travels inside;
a mismatch leaves nothing at the output path and exits 1; what cannot export says why."""

from __future__ import annotations

import sys

import pytest
import torch

from lit_vision.cli.export_files import (
    ExportMismatch,
    export_verified,
    load,
    max_difference,
    require_onnx,
)
from lit_vision.errors import LitVisionError
from lit_vision.models import CustomNet1, CustomNet2, ResNet18, SimpleNet, ViT

CROP = 32
ARCHITECTURES = {
    "SimpleNet": lambda **kw: SimpleNet(num_classes=4, **kw),
    "CustomNet1": lambda **kw: CustomNet1(num_classes=4, **kw),
    "CustomNet2": lambda **kw: CustomNet2(num_classes=4, **kw),
    "ResNet18": lambda **kw: ResNet18(num_classes=4, weights="none", **kw),
    "ViT": lambda **kw: ViT(num_classes=4, img_size=CROP, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                            window_size=2, window_blocks=[0], **kw),
}  # fmt: skip
HEAVY = {"CustomNet2", "ResNet18"}  # a few seconds each on a busy 2-core CPU


def build(name: str, **kwargs):
    torch.manual_seed(0)
    return ARCHITECTURES[name](**kwargs).eval()


def images(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, CROP, CROP), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))


@pytest.mark.parametrize("fmt", ["torchscript", "exported", "onnx"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ARCHITECTURES])
def test_every_architecture_round_trips_in_every_format(name, fmt, tmp_path):
    model = build(name)
    output = tmp_path / f"model.{fmt}"
    difference, _ = export_verified(model, fmt, output, CROP)
    assert difference <= 1e-4 and output.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    # Loaded independently, on a batch size neither the trace nor the check used.
    run, _ = load(fmt, output)
    with torch.no_grad():
        torch.testing.assert_close(run(images(3)), model(images(3)), rtol=0, atol=1e-4)


@pytest.mark.parametrize("fmt", ["torchscript", "exported", "onnx"])
def test_flip_tta_is_inside_the_exported_model(fmt, tmp_path):
    model = build("SimpleNet", tta="flip")
    export_verified(model, fmt, tmp_path / "tta", CROP)
    run, _ = load(fmt, tmp_path / "tta")
    plain = build("SimpleNet")
    batch = images(2)
    with torch.no_grad():
        expected = (plain(batch) + plain(batch.flip(-1))) / 2
        torch.testing.assert_close(run(batch), expected, rtol=0, atol=1e-5)


def test_verification_compares_against_the_model(tmp_path):
    export_verified(build("SimpleNet"), "torchscript", tmp_path / "a.pt", CROP)
    torch.manual_seed(1)
    other = SimpleNet(num_classes=4).eval()
    difference, _ = max_difference(other, "torchscript", tmp_path / "a.pt", CROP)
    assert difference > 1e-3  # another model's logits are not accepted


def test_a_mismatch_leaves_the_previous_file_and_names_the_difference(tmp_path):
    output = tmp_path / "model.onnx"
    difference, _ = export_verified(build("SimpleNet"), "onnx", output, CROP)
    assert difference > 0  # float32 in ONNX's evaluator is not bit-identical to torch
    output.write_bytes(b"previous")
    with pytest.raises(ExportMismatch, match=r"max abs diff .* > tolerance .*Nothing was written to"):
        export_verified(build("SimpleNet"), "onnx", output, CROP, tolerance=difference / 2)
    assert output.read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1


def test_the_hand_written_convolution_cannot_export_and_says_what_to_do(tmp_path):
    with pytest.raises(LitVisionError, match="conv: hand_written.*--model.init_args.conv torch"):
        export_verified(build("SimpleNet", conv="hand_written"), "exported", tmp_path / "m.pt2", CROP)
    assert not list(tmp_path.iterdir())


def test_onnx_without_the_onnx_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an absent package looks like to import
    with pytest.raises(LitVisionError, match="needs the onnx package, which is not installed: pip install onnx"):
        require_onnx()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_export_through_the_cli_gives_the_checkpoints_logits(tiny_config, run_cli, tmp_path, capsys):
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_epochs", "1") == 0
    last = next((tmp_path / "checkpoints").rglob("last.ckpt"))
    reference = SimpleNet.load_from_checkpoint(last, map_location="cpu").eval()
    for fmt, suffix in (("torchscript", ".torchscript.pt"), ("exported", ".pt2")):
        assert run_cli("export", "--config", tiny_config, "--ckpt_path", last, "--format", fmt) == 0
        assert "max abs diff" in capsys.readouterr().out
        run, _ = load(fmt, last.with_name("last" + suffix))
        with torch.no_grad():
            torch.testing.assert_close(run(images(4)), reference(images(4)), rtol=0, atol=1e-5)

    output = tmp_path / "out" / "model.onnx"
    assert run_cli("export", "--config", tiny_config, "--ckpt_path", last, "--format", "onnx", "--output", output,
                   "--model.init_args.tta", "flip") == 0  # fmt: skip
    run, _ = load("onnx", output)
    with torch.no_grad():
        expected = (reference(images(2)) + reference(images(2).flip(-1))) / 2
        torch.testing.assert_close(run(images(2)), expected, rtol=0, atol=1e-5)

    broken = tmp_path / "broken.ckpt"
    broken.write_text("not a checkpoint")
    assert run_cli("export", "--config", tiny_config, "--ckpt_path", broken, "--format", "exported") == 2
    error = capsys.readouterr().err
    assert str(broken) in error and "Traceback" not in error
    assert not (tmp_path / "broken.pt2").exists()


def test_the_command_rebuilds_the_model_from_the_checkpoint_alone(tmp_path):
    """`lit-vision export` loads through load_model_from_checkpoint: architecture, settings and
    crop size come from the file; --model.* overrides a setting; a config naming another
    architecture and an unknown setting are one-paragraph errors."""
    from lit_vision.cli.export import load_model

    model = build("SimpleNet")
    path = tmp_path / "tiny.ckpt"
    hparams = {**dict(model.hparams), "_class_path": "lit_vision.models.SimpleNet"}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                "datamodule_hyper_parameters": {"crop_size": CROP}}, path)  # fmt: skip
    loaded, crop = load_model(str(path), ["--model.init_args.tta", "flip"])
    assert type(loaded) is SimpleNet and crop == CROP and loaded.hparams.tta == "flip"
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
    other = tmp_path / "other.yaml"
    other.write_text("model:\n  class_path: lit_vision.models.CustomNet1\n")
    with pytest.raises(LitVisionError, match="holds a lit_vision.models.SimpleNet model, but the configured model is "
                                             "lit_vision.models.CustomNet1"):  # fmt: skip
        load_model(str(path), [], [str(other)])
    with pytest.raises(LitVisionError, match="--model.init_args.ttta flip: .*--model.help"):
        load_model(str(path), ["--model.init_args.ttta", "flip"])
