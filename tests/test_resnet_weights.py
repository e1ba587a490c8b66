"""ResNet18 fine-tuning: where weights come from, and the fine-tuning knobs.

No network: a randomly initialised torchvision resnet18 stands in for the ImageNet
file, and torchvision's download is mocked to fail as it does offline."""

from __future__ import annotations

import urllib.error

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import resnet18

from lit_vision.errors import LitVisionError
from lit_vision.models import ResNet18


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(123)
    reference = resnet18(weights=None)  # 1000-class head, like the ImageNet file
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return path, reference.state_dict()


def test_local_file_loads_backbone_and_replaces_head(weights_file):
    path, reference = weights_file
    model = ResNet18(num_classes=7, weights=str(path))
    state = model.net.state_dict()
    for key, value in reference.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(state[key], value), key
    assert model.net.fc.weight.shape == (7, 512)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_missing_file_says_how_to_provide_weights(tmp_path):
    with pytest.raises(LitVisionError, match="neither 'imagenet', 'none' nor an existing file") as err:
        ResNet18(num_classes=5, weights=str(tmp_path / "nope.pth"))
    assert "--model.weights none" in str(err.value)


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(LitVisionError, match="garbage.pth"):
        ResNet18(num_classes=5, weights=str(bad))


def test_wrong_state_dict_names_the_file_and_keys(tmp_path, weights_file):
    _, reference = weights_file
    state = dict(reference)
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(LitVisionError, match=r"other\.pth.*layer1\.0\.conv1\.weight.*extra\.weight"):
        ResNet18(num_classes=5, weights=str(path))


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(LitVisionError, match="does not hold a state dict"):
        ResNet18(num_classes=5, weights=str(path))


def test_imagenet_offline_fails_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: torchvision must download

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(LitVisionError) as err:
        ResNet18(num_classes=5, weights="imagenet")
    message = str(err.value)
    assert "offline" in message and "--model.weights none" in message and "resnet18-f37072fd.pth" in message


def test_imagenet_from_torch_hub_cache(tmp_path, monkeypatch, weights_file):
    """Weights already in torch.hub's cache load without any download."""
    path, reference = weights_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(path.read_bytes())
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    # torch.hub checks the hash only when it downloads, so the stand-in loads from the cache.
    model = ResNet18(num_classes=5, weights="imagenet")
    assert torch.equal(model.net.conv1.weight, reference["conv1.weight"])


class _RunsCode:
    def __reduce__(self):
        return (open, ("/dev/null",))  # any callable: weights_only must refuse to import it


def test_imagenet_file_planted_in_the_cache_is_refused(tmp_path, monkeypatch):
    """torch.hub checks the hash only when it downloads: a cached file is loaded weights_only."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"conv1.weight": _RunsCode()}, checkpoints / "resnet18-f37072fd.pth")
    with pytest.raises(LitVisionError, match="not a plain state dict and were refused"):
        ResNet18(num_classes=5, weights="imagenet")


def test_hand_written_convolution_keeps_the_loaded_weights(weights_file):
    from lit_vision.ops.conv import HandWrittenConv2d

    path, reference = weights_file
    model = ResNet18(num_classes=5, weights=str(path), conv="hand_written", conv_algorithm="im2col")
    assert isinstance(model.net.conv1, HandWrittenConv2d) and isinstance(model.net.layer4[1].conv2, HandWrittenConv2d)
    assert model.net.conv1.algorithm == "im2col"
    assert torch.equal(model.net.layer2[0].downsample[0].weight, reference["layer2.0.downsample.0.weight"])
    same = ResNet18(num_classes=5, weights=str(path))
    same.net.fc.load_state_dict(model.net.fc.state_dict())
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model.eval()(images), same.eval()(images), rtol=1e-4, atol=1e-5)


def test_default_is_random_initialisation_without_download(monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("asked for ImageNet"))
    torch.manual_seed(0)
    first = ResNet18(num_classes=5)
    torch.manual_seed(1)
    second = ResNet18(num_classes=5)
    # Random initialisation: the seed decides the weights (a loaded file would make them equal).
    assert not torch.equal(first.net.conv1.weight, second.net.conv1.weight)


def test_backbone_gets_scaled_learning_rate():
    model = ResNet18(num_classes=5, lr=0.01, backbone_lr_scale=0.1)
    groups = model.parameter_groups()
    head = {id(p) for p in model.net.fc.parameters()}
    for group in groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= head or not ids & head  # no group mixes head and backbone
        assert group["lr_scale"] == (1.0 if ids <= head else 0.1)
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(model.net.parameters()))


class _Record(L.Callback):
    def __init__(self):
        self.epochs = []

    def on_train_epoch_end(self, trainer, module):
        backbone_bn = module.net.bn1
        self.epochs.append(
            {
                "requires_grad": module.net.conv1.weight.requires_grad,
                "bn_training": backbone_bn.training,
                "conv1": module.net.conv1.weight.detach().clone(),
                "bn_mean": backbone_bn.running_mean.clone(),
                "fc": module.net.fc.weight.detach().clone(),
            }
        )


def test_freeze_backbone_for_first_epochs():
    torch.manual_seed(0)
    model = ResNet18(num_classes=4, lr=0.05, warmup_epochs=0, freeze_backbone_epochs=1)
    start = {"conv1": model.net.conv1.weight.detach().clone(), "fc": model.net.fc.weight.detach().clone()}
    start_mean = model.net.bn1.running_mean.clone()
    data = TensorDataset(torch.rand(8, 3, 32, 32), torch.arange(8) % 4)
    record = _Record()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record],
        num_sanity_val_steps=0,
    )
    trainer.fit(model, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    frozen, unfrozen = record.epochs
    assert not frozen["requires_grad"] and not frozen["bn_training"]  # still eval after validation
    assert torch.equal(frozen["conv1"], start["conv1"])
    assert torch.equal(frozen["bn_mean"], start_mean)
    assert not torch.equal(frozen["fc"], start["fc"])  # the head trained
    assert unfrozen["requires_grad"] and unfrozen["bn_training"]
    assert not torch.equal(unfrozen["conv1"], frozen["conv1"])
    assert not torch.equal(unfrozen["bn_mean"], frozen["bn_mean"])
