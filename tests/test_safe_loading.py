"""Checkpoints are read with weights_only=True semantics: a crafted file that would run code
is refused and runs nothing; missing, truncated, foreign and mismatched checkpoints get clear
errors naming both sides, and so do hundreds of random, truncated and otherwise broken files;
saved hyperparameters are plain types for every architecture."""

from __future__ import annotations

import io
import os
import random
import zipfile

import pytest
import torch

from lit_vision.checkpoints import (
    AtomicCheckpointIO,
    load_checkpoint_safely,
    load_lightning_checkpoint,
)
from lit_vision.cli import build_cli
from lit_vision.errors import LitVisionError
from lit_vision.models.registry import list_models

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


class RunsCode:
    """Unpickling this runs `touch <marker>`: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"payload": RunsCode(marker)}}, path)
    return path, marker


def test_crafted_checkpoint_is_refused_through_the_cli_and_runs_nothing(crafted, tiny_config, run_cli, capsys):
    path, marker = crafted
    for subcommand in ("validate", "fit", "test", "predict"):
        assert run_cli(subcommand, "--config", tiny_config, "--ckpt_path", path) == 2
        error = capsys.readouterr().err
        assert "Refusing to load the checkpoint" in error and "could run arbitrary code" in error, error
        assert "system" in error and "Traceback" not in error
    assert not marker.exists()


def test_every_load_path_refuses_the_crafted_file(crafted):
    path, marker = crafted
    with pytest.raises(LitVisionError, match="not plain data"):
        load_checkpoint_safely(path)
    # Lightning's restore goes through the CheckpointIO the CLI installs; a caller asking for
    # weights_only=False still gets weights_only=True.
    with pytest.raises(LitVisionError, match="not plain data"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_config):
    """A SimpleNet and a CustomNet1 checkpoint of the tiny run (a few steps each)."""
    root = tmp_path_factory.mktemp("fitted")
    previous = os.getcwd()
    os.chdir(root)
    try:
        paths = {}
        for model in ("SimpleNet", "CustomNet1"):
            build_cli(["fit", "--config", str(tiny_config), "--model", model, "--experiment", model,
                       "--trainer.max_steps", "2", "--trainer.logger", "false"])  # fmt: skip
            paths[model] = root / "checkpoints" / model / "version_0" / "last.ckpt"
            assert paths[model].is_file()
    finally:
        os.chdir(previous)
    return paths


def test_checkpoint_of_another_architecture_names_both(fitted, tiny_config, run_cli, capsys):
    code = run_cli("validate", "--config", tiny_config, "--ckpt_path", fitted["CustomNet1"])
    error = capsys.readouterr().err
    assert code == 2
    assert "holds a lit_vision.models.CustomNet1 model" in error
    assert "configured model is lit_vision.models.SimpleNet" in error and "Traceback" not in error
    # Named on the command line too.
    assert run_cli("validate", "--config", tiny_config, "--model", "CustomNet1", "--ckpt_path", fitted["SimpleNet"]) == 2
    error = capsys.readouterr().err
    assert "holds a lit_vision.models.SimpleNet model" in error and "configured model is lit_vision.models.CustomNet1" in error


def test_checkpoint_restores_its_architecture_when_none_was_named(fitted, tiny_config, tmp_path, monkeypatch):
    """Without a model in the config or flags, --ckpt_path restores the checkpoint's architecture."""
    import yaml

    config = yaml.safe_load(tiny_config.read_text())
    del config["model"]
    plain = tmp_path / "no_model.yaml"
    plain.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["validate", "--config", str(plain), "--ckpt_path", str(fitted["CustomNet1"])])
    assert type(cli.model).__name__ == "CustomNet1"
    assert "val/top1" in cli.trainer.callback_metrics


def test_checkpoint_with_another_class_count_names_both(fitted, tiny_config, tmp_path, run_cli, capsys):
    checkpoint = torch.load(fitted["SimpleNet"], weights_only=True)
    checkpoint["hyper_parameters"]["num_classes"] = 7
    seven = tmp_path / "seven.ckpt"
    torch.save(checkpoint, seven)
    assert run_cli("validate", "--config", tiny_config, "--ckpt_path", seven) == 2
    error = capsys.readouterr().err
    assert "trained for 7 classes, but data.num_classes is 4" in error and "Traceback" not in error
    # The model's own check (a model built for 7 classes on 4-class data) names both as well.
    assert run_cli("validate", "--config", tiny_config, "--model.init_args.num_classes", "7") == 2
    assert "7 output classes but the data has 4" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("missing", "does not exist"),
        ("truncated", "cannot be read as a PyTorch file: it is truncated"),
        ("text", "cannot be read as a PyTorch file"),
        ("foreign", "not a Lightning checkpoint (no 'state_dict'"),
    ],
)
def test_damaged_checkpoints_are_clear_errors(damage, expected, fitted, tiny_config, tmp_path, run_cli, capsys):
    path = tmp_path / f"{damage}.ckpt"
    if damage == "truncated":
        data = fitted["SimpleNet"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "text":
        path.write_text("not a checkpoint\n")
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    assert run_cli("validate", "--config", tiny_config, "--ckpt_path", path) == 2
    error = capsys.readouterr().err
    assert expected in error and str(path) in error and "Traceback" not in error


@pytest.mark.slow  # a one-step CLI fit per architecture
@pytest.mark.parametrize("architecture", list_models())
def test_saved_hyperparameters_are_plain_types(architecture, tiny_config, tmp_path, monkeypatch):
    """Every architecture's checkpoint loads with weights_only=True, hyperparameters included."""
    monkeypatch.chdir(tmp_path)
    extra = ["--model.init_args.weights", "none"] if architecture == "ResNet18" else []
    build_cli(["fit", "--config", str(tiny_config), "--model", architecture, *extra, "--trainer.max_steps", "1",
               "--trainer.limit_val_batches", "0", "--trainer.logger", "false"])  # fmt: skip
    path = tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    hparams = checkpoint["hyper_parameters"]
    assert hparams["_class_path"] == f"lit_vision.models.{architecture}"

    def plain(value):
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        return value is None or isinstance(value, (bool, int, float, str))

    assert plain(hparams), hparams


def broken_checkpoints(real: bytes, count: int, seed: int = 0):
    """(name, bytes) of files that are no checkpoint: random bytes, text, truncations of a real
    checkpoint at random points, zips without a pickle, and a real zip with a damaged pickle."""
    rng = random.Random(seed)
    yield "empty", b""
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.txt", "hello")
    yield "zip without data.pkl", zipped.getvalue()
    for i in range(count):
        kind = i % 4
        if kind == 0:
            yield f"random-{i}", rng.randbytes(rng.randrange(1, 3000))
        elif kind == 1:
            yield f"text-{i}", "".join(rng.choice("abc xyz:\n{}[]0123") for _ in range(rng.randrange(1, 400))).encode()
        else:
            yield f"truncated-{i}", real[: rng.randrange(0, len(real) - 1)]


def test_fuzz_every_broken_file_is_one_clear_error(fitted, tmp_path):
    """Many broken files through the loading function the CLI uses; a few through the CLI below."""
    real = fitted["SimpleNet"].read_bytes()
    count = 0
    for name, data in broken_checkpoints(real, 160):
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(data)
        with pytest.raises(LitVisionError) as caught:
            load_lightning_checkpoint(path)
        message = str(caught.value)
        # (Text can happen to spell a legacy pickle's GLOBAL opcode: refused as unsafe, also fine.)
        understood = ("cannot be read as a PyTorch file", "not a Lightning checkpoint", "Refusing to load")
        assert str(path) in message and any(reason in message for reason in understood), message
        assert "\n" not in message  # one paragraph
        count += 1
    assert count == 162


@pytest.mark.parametrize("which", [0, 3, 6])  # random bytes, truncated, zip without a pickle
def test_fuzzed_files_through_the_cli_exit_2(which, fitted, tiny_config, tmp_path, run_cli, capsys):
    name, data = list(broken_checkpoints(fitted["SimpleNet"].read_bytes(), 8, seed=1))[which]
    path = tmp_path / "broken.ckpt"
    path.write_bytes(data)
    assert run_cli("fit", "--config", tiny_config, "--ckpt_path", path) == 2, name
    error = capsys.readouterr().err
    assert f"error: The checkpoint {path}" in error and "Traceback" not in error
