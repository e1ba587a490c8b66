"""The bad-input catalogue: every row is a bad flag, YAML file, data folder or checkpoint given
to the CLI, and the message fragments its error must contain. Each must exit with status 2,
name the culprit and what was expected, print no traceback, and leave the files that were on
disk (the data, an existing last.ckpt) byte-for-byte intact.

Placeholders in a row's arguments: {config} the tiny run config, {yaml} the row's YAML file,
{data}/{bad_label}/{bad_range} data folders, {ckpt:NAME} checkpoint files (see `files`)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from lit_vision.cli import build_cli

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

ADV_EVAL = "lit_vision.callbacks.adversarial_eval.AdversarialEvaluation"
ADV_TRAIN = "lit_vision.callbacks.adversarial_training.AdversarialTraining"


def callback(class_path: str, **init_args) -> dict:
    return {"trainer": {"callbacks": [{"class_path": class_path, "init_args": init_args}]}}


#   id                         subcommand + arguments                               YAML (for {yaml})         expected fragments
ROWS = [
    # --- model choice and values
    ("unknown model",          "fit --config {config} --model NoSuchNet",            None,                     ["Unknown model 'NoSuchNet'", "expected one of SimpleNet"]),
    ("lr negative (flag)",     "fit --config {config} --model.init_args.lr -1",      None,                     ["model.lr must be positive, got -1.0"]),
    ("class count mismatch",   "fit --config {config} --model.init_args.num_classes 7", None,                  ["7 output classes but the data has 4"]),
    ("class count in YAML",    "fit --config {config} --config {yaml}",              {"model": {"init_args": {"num_classes": 7}}}, ["row.yaml (model num_classes: 7) would give the model 7 output classes but the data has 4", "--data.num_classes 7"]),
    ("class count in --model file", "fit --config {config} --model {yaml}",        {"class_path": "lit_vision.models.SimpleNet", "init_args": {"num_classes": 9}}, ["row.yaml (model num_classes: 9)", "but the data has 4"]),
    ("lr negative (YAML)",     "fit --config {config} --config {yaml}",              {"model": {"init_args": {"lr": -0.5}}}, ["model.lr must be positive, got -0.5"]),
    # --- flags: one paragraph naming the culprit and the closest valid flag; no abbreviations
    ("unknown flag",           "fit --config {config} --trainer.max_epohcs 1",      None,                     ["unknown flag --trainer.max_epohcs (did you mean --trainer.max_epochs?)", "fit --help` lists every option"]),
    ("truncated flag",         "fit --config {config} --trainer.max_epoch 1",       None,                     ["unknown flag --trainer.max_epoch (did you mean --trainer.max_epochs?)"]),
    ("unknown model flag",     "fit --config {config} --model.init_args.lrr 0.1",   None,                     ["unknown flag --model.init_args.lrr", "(did you mean --model.init_args.lr?)"]),
    # --- types and ranges of flags and YAML
    ("batch size not an int",  "fit --config {config} --data.batch_size abc",       None,                     ["data.batch_size = abc: expected int"]),
    ("batch size zero",        "fit --config {config} --data.batch_size 0",         None,                     ["data.batch_size must be a positive integer, got 0"]),
    ("crop above resize",      "fit --config {config} --data.crop_size 64",         None,                     ["data.resize_size (36) must be >= data.crop_size (64)"]),
    ("YAML key typo",          "fit --config {config} --config {yaml}",              {"data": {"batch_sise": 8}}, ["does not accept option 'data.batch_sise'"]),
    ("YAML wrong type",        "fit --config {config} --config {yaml}",              {"trainer": {"max_epochs": "many"}}, ["trainer.max_epochs = many: expected int or None"]),
    ("max_epochs out of range", "fit --config {config} --trainer.max_epochs -5",     None,                     ["`max_epochs` must be a non-negative integer or -1", "-5"]),
    ("checkpoint every -1",    "fit --config {config} --checkpoint_every_n_steps -1", None,                    ["checkpoint_every_n_steps must be an integer >= 0", "got -1"]),
    # --- data
    ("missing data_dir",       "fit --config {config} --data.data_dir {missing}",   None,                     ["is missing. Looked for", "train.txt", "data.standin: true"]),
    ("bad label line",         "fit --config {config} --data.data_dir {bad_label}", None,                     ["val.txt, line 2: expected '<image path relative to images/> <integer label>'", "'val/00000002.jpg cat'"]),
    ("label out of range",     "validate --config {config} --data.data_dir {bad_range}", None,                ["val.txt, line 3: label 9 is outside [0, 4)"]),
    # --- checkpoints
    ("checkpoint missing",     "validate --config {config} --ckpt_path {ckpt:absent}", None,                  ["absent.ckpt does not exist"]),
    ("checkpoint truncated",   "validate --config {config} --ckpt_path {ckpt:truncated}", None,               ["truncated.ckpt", "cannot be read as a PyTorch file: it is truncated"]),
    ("checkpoint foreign",     "validate --config {config} --ckpt_path {ckpt:foreign}", None,                 ["foreign.ckpt is a PyTorch file but not a Lightning checkpoint", "'state_dict'"]),
    ("checkpoint crafted",     "validate --config {config} --ckpt_path {ckpt:crafted}", None,                 ["Refusing to load the checkpoint", "system", "could run arbitrary code"]),
    ("checkpoint other model", "test --config {config} --ckpt_path {ckpt:vit}",     None,                     ["holds a lit_vision.models.ViT model", "configured model is lit_vision.models.SimpleNet"]),
    ("checkpoint other classes", "predict --config {config} --ckpt_path {ckpt:seven}", None,                  ["trained for 7 classes, but data.num_classes is 4"]),
    ("resume from crafted",    "fit --config {config} --ckpt_path {ckpt:crafted}",   None,                     ["Refusing to load the checkpoint"]),
    ("checkpoint is text",     "validate --config {config} --ckpt_path {ckpt:text}", None,                     ["text.ckpt", "cannot be read as a PyTorch file"]),
    ("checkpoint empty",       "test --config {config} --ckpt_path {ckpt:empty}",   None,                     ["empty.ckpt (0 bytes) cannot be read as a PyTorch file"]),
    ("checkpoint random bytes", "fit --config {config} --ckpt_path {ckpt:random}",  None,                     ["random.ckpt (4096 bytes) cannot be read as a PyTorch file"]),
    ("checkpoint zip, not torch", "validate --config {config} --ckpt_path {ckpt:zip}", None,                  ["zip.ckpt", "cannot be read as a PyTorch file"]),
    ("checkpoint is a folder", "validate --config {config} --ckpt_path {ckpt:folder}", None,                  ["folder.ckpt is not a file"]),
    ("resume last, other model", "fit --config {config} --ckpt_path last --model CustomNet1", None,           ["--ckpt_path last: using", "version_0/last.ckpt holds a lit_vision.models.SimpleNet model", "configured model is lit_vision.models.CustomNet1"]),
    ("resume last, no such run", "fit --config {config} --ckpt_path last --experiment elsewhere", None,       ["--ckpt_path last: no last.ckpt", "checkpoints/elsewhere", "'elsewhere'"]),
    # --- images, checked before the first step
    ("unreadable images",      "fit --config {config} --data.data_dir {bad_images}", None,                   ["2 of the 80 listed images cannot be read", "(listed in", "train.txt): it is empty (0 bytes)", "val.txt): it is not an image", "data.verify: false"]),
    # --- attack parameters
    ("adv eval epsilon < 0",   "test --config {config} --config {yaml}",             callback(ADV_EVAL, epsilon=-0.1), ["PGD epsilon must be > 0", "got -0.1"]),
    ("adv eval zero steps",    "test --config {config} --config {yaml}",             callback(ADV_EVAL, num_steps=0), ["PGD num_steps must be an integer >= 1, got 0"]),
    ("adv eval epsilon > 1",   "test --config {config} --config {yaml}",             callback(ADV_EVAL, epsilon=8), ["exceeds the whole range", "8.0/255"]),
    ("adv train epsilon < 0",  "fit --config {config} --config {yaml}",              callback(ADV_TRAIN, epsilon=[-0.1, 0.1]), ["AdversarialTraining epsilon must be a range", "got [-0.1, 0.1]"]),
    ("adv train zero steps",   "fit --config {config} --trainer.callbacks+=" + ADV_TRAIN + " --trainer.callbacks.steps=[0,0]", None, ["AdversarialTraining steps must be an integer range", "got [0, 0]"]),
]  # fmt: skip


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory, standin_dir, tiny_config) -> dict:
    """Bad data folders and checkpoints, made once for the module."""
    root = tmp_path_factory.mktemp("bad_inputs")
    made = {"config": tiny_config, "data": standin_dir, "missing": root / "no_such_folder", "marker": root / "pwned"}
    for name, line, bad in (("bad_label", 1, "val/00000002.jpg cat"), ("bad_range", 2, None)):
        folder = root / name
        shutil.copytree(standin_dir, folder)
        lines = (folder / "val.txt").read_text().splitlines()
        lines[line] = bad or f"{lines[line].split()[0]} 9"
        (folder / "val.txt").write_text("\n".join(lines) + "\n")
        made[name] = folder
    made["bad_images"] = root / "bad_images"
    shutil.copytree(standin_dir, made["bad_images"])
    for list_name, index, content in (("train.txt", 2, b""), ("val.txt", 0, b"\x89PNG but not really")):
        relative = (made["bad_images"] / list_name).read_text().split()[2 * index]
        (made["bad_images"] / "images" / relative).write_bytes(content)

    previous = os.getcwd()
    os.chdir(root)
    try:
        build_cli(["fit", "--config", str(tiny_config), "--trainer.max_steps", "1", "--trainer.logger", "false",
                   "--trainer.limit_val_batches", "0"])  # fmt: skip
    finally:
        os.chdir(previous)
    good = root / "checkpoints" / "tiny" / "version_0" / "last.ckpt"
    checkpoint = torch.load(good, weights_only=True)
    ckpts = {"good": good, "absent": root / "absent.ckpt"}
    ckpts["truncated"] = root / "truncated.ckpt"
    ckpts["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    ckpts["foreign"] = root / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, ckpts["foreign"])
    ckpts["crafted"] = root / "crafted.ckpt"
    torch.save({"state_dict": {}, "x": RunsCode(made["marker"])}, ckpts["crafted"])
    for name, change in (("vit", {"_class_path": "lit_vision.models.ViT"}), ("seven", {"num_classes": 7})):
        ckpts[name] = root / f"{name}.ckpt"
        torch.save({**checkpoint, "hyper_parameters": {**checkpoint["hyper_parameters"], **change}}, ckpts[name])
    ckpts["text"] = root / "text.ckpt"
    ckpts["text"].write_text("model: SimpleNet\nlr: 0.1\n")
    ckpts["empty"] = root / "empty.ckpt"
    ckpts["empty"].write_bytes(b"")
    ckpts["random"] = root / "random.ckpt"
    ckpts["random"].write_bytes(random.Random(0).randbytes(4096))
    ckpts["zip"] = root / "zip.ckpt"
    with zipfile.ZipFile(ckpts["zip"], "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    ckpts["folder"] = root / "folder.ckpt"
    ckpts["folder"].mkdir()
    made["ckpt"] = ckpts
    return made


def snapshot(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        if folder.exists()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("args, yaml_content, expected", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_is_a_clear_error_and_harms_nothing(args, yaml_content, expected, files, run_cli, tmp_path, capsys):
    # A previous run's last.ckpt sits where a run of the same name writes (and resumes from).
    existing = tmp_path / "checkpoints" / "tiny" / "version_0"
    existing.mkdir(parents=True)
    shutil.copy(files["ckpt"]["good"], existing / "last.ckpt")
    row_yaml = tmp_path / "row.yaml"
    if yaml_content is not None:
        row_yaml.write_text(yaml.safe_dump(yaml_content))
    places = {k: str(v) for k, v in files.items() if k != "ckpt"} | {"yaml": str(row_yaml)}
    argv = []
    for token in args.split():
        for name, path in files["ckpt"].items():
            token = token.replace(f"{{ckpt:{name}}}", str(path))
        argv.append(token.format(**places))
    watched = [files["data"], files["bad_label"], files["bad_range"], files["bad_images"], existing,
               files["ckpt"]["good"].parent]  # fmt: skip
    before = snapshot(*watched)

    code = run_cli(*argv)

    err = capsys.readouterr().err
    assert code == 2, err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert "Traceback" not in err and "usage:" not in err  # the usage is for --help
    assert snapshot(*watched) == before  # nothing written, nothing replaced or removed
    assert not files["marker"].exists()  # the crafted checkpoint ran nothing
    # A run that failed leaves no empty checkpoint folder behind.
    assert sorted(p.name for p in existing.parent.iterdir()) == ["version_0"]
