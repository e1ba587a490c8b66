"""`--model Timm`: any timm architecture with every feature the built-in ones have.

Four families at tiny sizes (32-px images, 4 classes): a ResNet, a ConvNeXt, a ViT (two
blocks) and MobileViT-v2 (convolutions + attention, pretrained on un-normalised pixels). The
unit tests check what the wrapper adds (normalisation from the pretrained configuration, input
size, head and backbone learning rates, hub and local weights, errors); the slow ones run the
command line end to end: fit -> validate -> test under attack -> predict -> export (ONNX, run by
onnxruntime) -> resume, adversarial training (PGD, TRADES) and `compile: step`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

timm = pytest.importorskip("timm")

from lit_vision.cli import build_cli  # noqa: E402
from lit_vision.errors import LitVisionError  # noqa: E402
from lit_vision.models import Timm, list_models, list_wrappers  # noqa: E402
from lit_vision.models.registry import model_class  # noqa: E402
from lit_vision.nets.timm_net import head_parameter_names  # noqa: E402

CLASSES, CROP = 4, 32
# Architecture -> extra init_args keeping it tiny (a two-block ViT).
ARCHITECTURES = {
    "resnet10t": {},
    "convnext_atto": {},
    "vit_tiny_patch16_224": {"timm_kwargs": {"depth": 2}},
    "mobilevitv2_050": {},
}


def build(name: str, **kwargs) -> Timm:
    torch.manual_seed(0)
    args = {**ARCHITECTURES.get(name, {}), **kwargs}
    config = timm.models.get_pretrained_cfg(name)  # None for a name timm does not know
    if config is not None and config.fixed_input_size:
        args.setdefault("img_size", CROP)
    return Timm(num_classes=CLASSES, name=name, **args)


def pixels(n: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, CROP, CROP), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))


# ------------------------------------------------------------------------------ the module
def test_timm_is_selectable_but_not_a_builtin():
    assert model_class("Timm") is Timm and list_wrappers() == {"Timm": "timm"}
    assert "Timm" not in list_models()  # the built-in suite and README table stay the package's own


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_pixel_images_are_normalised_with_the_pretrained_configs_statistics(name):
    model = build(name).eval()
    config = timm.models.get_pretrained_cfg(name)
    mean, std = torch.tensor(config.mean).view(1, 3, 1, 1), torch.tensor(config.std).view(1, 3, 1, 1)
    images = pixels()
    with torch.no_grad():
        logits = model(images)
        by_hand = model.net((images.float() / 255 - mean) / std)
        from_floats = model(images.float() / 255)
    assert logits.shape == (2, CLASSES)
    torch.testing.assert_close(logits, by_hand)  # normalisation is the first (and only added) operation
    torch.testing.assert_close(logits, from_floats)  # uint8 and [0, 1] floats are the same pixels


def test_flip_tta_averages_each_image_and_its_mirror():
    model = build("convnext_atto", tta="flip").eval()
    images = pixels(3)
    with torch.no_grad():
        both = [model.net(model.normalize(x)) for x in (images, images.flip(-1))]
        torch.testing.assert_close(model(images), (both[0] + both[1]) / 2)


def test_the_architecture_listing_says_how_to_reach_timm(capsys):
    from lit_vision.models.__main__ import main

    assert main(["timm", "convnext_at*"]) == 0
    assert "convnext_atto" in capsys.readouterr().out.split()
    assert main([]) == 0
    table = capsys.readouterr().out
    assert "| SimpleNet |" in table and "| Timm |" not in table  # the built-ins' table
    assert "--model timm:convnext_atto" in table and "pip install 'lit-vision[timm]'" in table


def test_a_fixed_size_architecture_is_built_for_the_given_size_and_checked_against_the_data():
    model = build("vit_tiny_patch16_224")
    assert model.net.pos_embed.shape[1] == 1 + (CROP // 16) ** 2 and model.input_size() == CROP
    assert build("resnet10t").input_size() is None  # a CNN takes any size

    class Data:
        hparams = type("H", (), {"crop_size": 64})()
        num_classes = CLASSES

    model._trainer = type("T", (), {"datamodule": Data()})()
    with pytest.raises(LitVisionError, match=r"takes 32×32 images.*data's crop is 64×64.*img_size to 64"):
        model.setup("fit")


def weights_file(tmp_path: Path, name: str, suffix: str = ".pth") -> tuple[Path, torch.nn.Module]:
    """timm's `name` with its ImageNet-sized head (1000 classes), saved as a user would."""
    torch.manual_seed(1)
    source = timm.create_model(name, **ARCHITECTURES[name])
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    return path, source


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_file_loads_the_backbone_and_a_new_head_learns_faster(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    path, source = weights_file(tmp_path, "resnet10t", suffix)
    model = build("resnet10t", pretrained_file=str(path), lr=0.5)
    head = head_parameter_names(model.net)
    assert head == {"fc.weight", "fc.bias"} and model.net.fc.out_features == CLASSES
    expected = source.state_dict()
    for key, value in model.net.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(value, expected[key], msg=key)
    # Backbone at backbone_lr_scale x lr (0.1 by default from pretrained weights), head at lr.
    rates = {id(p): g["lr"] for g in model.build_optimizer().param_groups for p in g["params"]}
    for name, param in model.net.named_parameters():
        assert rates[id(param)] == pytest.approx(0.5 if name in head else 0.05), name


def test_from_random_weights_every_parameter_learns_at_lr_unless_told():
    for kwargs, backbone in (({}, 0.5), ({"backbone_lr_scale": 0.2}, 0.1)):
        model = build("vit_tiny_patch16_224", lr=0.5, **kwargs)
        head = head_parameter_names(model.net)
        assert head == {"head.weight", "head.bias"}
        rates = {id(p): g["lr"] for g in model.build_optimizer().param_groups for p in g["params"]}
        backbone_rates = [rates[id(p)] for n, p in model.net.named_parameters() if n not in head]
        assert backbone_rates == pytest.approx([backbone] * len(backbone_rates))
        assert [rates[id(p)] for n, p in model.net.named_parameters() if n in head] == [0.5, 0.5]
        # timm's no_weight_decay() (position embedding, class token) is honoured.
        decay = {id(p): g["weight_decay"] for g in model.build_optimizer().param_groups for p in g["params"]}
        assert decay[id(model.net.pos_embed)] == 0.0 and decay[id(model.net.patch_embed.proj.weight)] > 0


def test_pretrained_offline_is_one_paragraph_saying_how_to_provide_the_weights(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no retries against the network
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(LitVisionError) as error:
        build("resnet10t", pretrained=True)
    message = str(error.value)
    assert "\n" not in message
    for part in ("timm resnet10t", "model.init_args.pretrained: true", "offline", "timm/resnet10t.c3_in1k",
                 "--model.init_args.pretrained_file", "--model.init_args.pretrained false"):  # fmt: skip
        assert part in message, part


def test_bad_weights_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(LitVisionError, match=r"'convnext_attto'.*Closest: convnext_atto"):
        build("convnext_attto")
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(LitVisionError, match=r"pretrained_file is '.*nowhere.pth', which is not a file"):
        build("resnet10t", pretrained_file=str(missing))
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    with pytest.raises(LitVisionError, match=r"Could not load timm resnet10t weights from .*notes.pth"):
        build("resnet10t", pretrained_file=str(text))
    other, _ = weights_file(tmp_path, "convnext_atto")
    with pytest.raises(LitVisionError, match=r"Could not load timm resnet10t weights from .*convnext_atto.pth"):
        build("resnet10t", pretrained_file=str(other))
    with pytest.raises(LitVisionError, match="keep one"):
        build("resnet10t", pretrained=True, pretrained_file=str(other))
    with pytest.raises(LitVisionError, match=r"does not take.*unexpected keyword argument 'depthh'"):
        build("resnet10t", timm_kwargs={"depthh": 2})


def test_a_missing_timm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(LitVisionError, match=r"needs the timm package.*pip install 'lit-vision\[timm\]'"):
        Timm(num_classes=CLASSES, name="resnet10t")


def test_a_checkpoint_needs_no_initial_weights(tmp_path):
    path, _ = weights_file(tmp_path, "resnet10t")
    model = build("resnet10t", pretrained_file=str(path))
    checkpoint = {"hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    saved = checkpoint["hyper_parameters"]
    assert saved["pretrained"] is False and saved["pretrained_file"] is None and saved["backbone_lr_scale"] == 0.1
    assert saved["name"] == "resnet10t" and checkpoint["timm_initial_weights"] == str(path)
    path.unlink()  # rebuilding from the checkpoint's arguments reads no file
    assert Timm(**saved).backbone_lr_scale == 0.1


def test_timm_shorthand_expands_to_the_class_and_its_name():
    from lit_vision.cli.timm_flags import expand_model_shorthand

    assert expand_model_shorthand(["fit", "--model", "timm:convnext_atto", "--trainer.max_epochs", "1"]) == [
        "fit", "--model", "Timm", "--model.init_args.name", "convnext_atto", "--trainer.max_epochs", "1"]  # fmt: skip
    assert expand_model_shorthand(["--model=timm:resnet10t"]) == ["--model", "Timm", "--model.init_args.name", "resnet10t"]
    assert expand_model_shorthand(["--model", "SimpleNet"]) == ["--model", "SimpleNet"]
    with pytest.raises(LitVisionError, match="names no architecture"):
        expand_model_shorthand(["--model", "timm:"])


# -------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_the_shorthand_builds_a_fixed_size_net_for_the_datas_crop(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["fit", "--config", str(tiny_config), "--model", "timm:vit_tiny_patch16_224",
                     "--model.init_args.timm_kwargs", "{depth: 1}", "--trainer.fast_dev_run", "1"])  # fmt: skip
    assert isinstance(cli.model, Timm) and cli.model.timm_name == "vit_tiny_patch16_224"
    assert cli.model.input_size() == CROP and cli.model.hparams.img_size == CROP  # timm's own default is 224


@pytest.fixture
def timm_config(tiny_config, tmp_path):
    """tiny_config with `--model Timm` (architecture given per test); img_size is left to the data."""

    def write(name: str, **init_args) -> Path:
        config = yaml.safe_load(Path(tiny_config).read_text())
        config["experiment"] = name
        config["model"] = {
            "class_path": "lit_vision.models.Timm",
            "init_args": {"name": name, "optimizer": "adamw", "lr": 2e-3, "warmup_epochs": 0,
                          **ARCHITECTURES[name], **init_args},
        }  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


def attack_config(tmp_path: Path) -> Path:
    """Adversarial evaluation at test: true-label PGD, 2 steps, no sweep (tiny)."""
    config = {
        "trainer": {
            "inference_mode": False,
            "callbacks": [{
                "class_path": "lit_vision.callbacks.adversarial_eval.AdversarialEvaluation",
                "init_args": {"epsilon": 0.0314, "num_steps": 2, "targets": ["true_label"], "masking_checks": False,
                              "num_images": 0},
            }],
        }
    }  # fmt: skip
    path = tmp_path / "attack.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_fit_validate_attack_predict_export_resume(name, timm_config, run_cli, tmp_path):
    import onnxruntime

    config = timm_config(name)
    fit = build_cli(["fit", "--config", str(config)])
    assert fit.model.net.default_cfg["architecture"] == name.split(".")[0]
    if fit.model.input_size() is not None:
        assert fit.model.input_size() == CROP  # from data.crop_size, not timm's 224
    run = tmp_path / "checkpoints" / name / "version_0"
    last = run / "last.ckpt"
    saved = torch.load(last, weights_only=True, map_location="cpu")
    assert saved["hyper_parameters"]["_class_path"] == "lit_vision.models.Timm"
    assert saved["hyper_parameters"]["name"] == name
    logged = fit.trainer.callback_metrics["val/top1"].item()

    validate = build_cli(["validate", "--config", str(config), "--ckpt_path", str(last)])
    assert validate.trainer.callback_metrics["val/top1"].item() == pytest.approx(logged, abs=1e-6)

    attacked = build_cli(["test", "--config", str(config), "--config", str(attack_config(tmp_path)),
                          "--ckpt_path", str(last), "--trainer.limit_test_batches", "2"])  # fmt: skip
    metrics = attacked.trainer.callback_metrics
    assert metrics["test/adv_top1"].item() <= metrics["test/top1"].item()

    assert run_cli("predict", "--config", config, "--ckpt_path", last) == 0
    submission = next((tmp_path / "logs" / name / "eval").glob("version_*/submission.txt"))
    assert len(submission.read_text().splitlines()) == 6

    onnx_file = tmp_path / f"{name}.onnx"
    assert run_cli("export", "--config", config, "--ckpt_path", last, "--format", "onnx", "--output", onnx_file) == 0
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    model = validate.model.eval()
    with torch.no_grad():
        expected = model(pixels(3))
    torch.testing.assert_close(torch.from_numpy(session.run(None, {"images": pixels(3).numpy()})[0]), expected,
                               rtol=0, atol=1e-4)  # fmt: skip

    resumed = build_cli(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_epochs", "2"])
    assert resumed.trainer.current_epoch == 2
    assert resumed.trainer.global_step == 2 * fit.trainer.global_step
    assert (tmp_path / "checkpoints" / name / "version_1" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["mix", "trades"])
@pytest.mark.parametrize("name", ["resnet10t", "vit_tiny_patch16_224"])
def test_adversarial_training(name, objective, timm_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run's folders
    config = timm_config(name)
    callbacks = [{
        "class_path": "lit_vision.callbacks.adversarial_training.AdversarialTraining",
        "init_args": {"fraction": 1.0, "epsilon": [0.0314, 0.0314], "steps": [2, 2], "target": "true_label",
                      "random_start": True, "objective": objective},
    }]  # fmt: skip
    cli = build_cli(["fit", "--config", str(config), "--trainer.callbacks", yaml.safe_dump(callbacks),
                     "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"])  # fmt: skip
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss_epoch"])
    training = next(c for c in cli.trainer.callbacks if type(c).__name__ == "AdversarialTraining")
    assert training.objective == objective and training.batches_perturbed == training.batches_seen == 2
    assert (tmp_path / "checkpoints" / name / "version_0" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet10t", "convnext_atto"])
def test_compile_step(name, timm_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run's folders
    config = timm_config(name, compile="step")
    cli = build_cli(["fit", "--config", str(config), "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"])
    assert not cli.model.automatic_optimization and "_compiled_loss" in cli.model.__dict__
    assert cli.trainer.global_step == 2 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
