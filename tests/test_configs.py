"""Every recipe in configs/ (found by glob, so a new recipe is tested by existing) runs
through the CLI: `lit-vision fit --config configs/X.yaml` with `fast_dev_run` on the tiny
stand-in. Flags shrink the data and move the run to the CPU; everything else (model,
optimiser, trainer options, callbacks, the shared pieces a recipe names) is the recipe's.

configs/resnet18_finetune.yaml asks for ImageNet weights, a download: the test sets
`--model.init_args.weights none` for it (the weights-file path is tested in
tests/test_resnet_weights.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
# Top-level files only: configs/data/, configs/trainer/ hold the shared pieces.
RECIPES = sorted(CONFIGS.glob("*.yaml"))
NEEDS_A_DOWNLOAD = {"resnet18_finetune": ["--model.init_args.weights", "none"]}
# Recipes on configs/data/places365.yaml run on the stand-in in Places365's layout.
PLACES365_RECIPES = {r.stem for r in RECIPES if "data/places365.yaml" in r.read_text()}
# Recipes on CIFAR run on a tiny fixture in torchvision's CIFAR format (its class count is CIFAR's).
CIFAR_RECIPES = {r.stem: layout for r in RECIPES for layout in ("cifar10", "cifar100") if f"data/{layout}.yaml" in r.read_text()}


def test_recipes_are_found():
    assert {"quickstart", "simplenet", "vit"} <= {r.stem for r in RECIPES}
    assert PLACES365_RECIPES == {"resnet18_places365"}


# Shared pieces live in configs/data/ and configs/trainer/ (configs/spaces/ holds search spaces: below).
SHARED_PIECES = sorted(p for folder in ("data", "trainer") for p in (CONFIGS / folder).glob("*.yaml"))
SPACES = sorted((CONFIGS / "spaces").glob("*.yaml"))


@pytest.mark.parametrize("piece", SHARED_PIECES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shared_piece_is_used(piece):
    """A piece no recipe names is dead weight (or a recipe repeats it inline)."""
    reference = f"{piece.parent.name}/{piece.name}"
    assert any(reference in recipe.read_text() for recipe in RECIPES), reference


@pytest.mark.slow
@pytest.mark.parametrize("space", SPACES, ids=lambda p: p.stem)
def test_every_search_space_names_keys_its_recipe_takes(space):
    """configs/spaces/X.yaml is a space for configs/X.yaml: every key parses through the CLI on it."""
    from lit_vision.studies.space import check_against_cli, load_space

    recipe = CONFIGS / space.name
    assert recipe.is_file(), f"{space}: no recipe {recipe.name} beside it"
    params = load_space(space).params
    merged = check_against_cli(load_space(space), ["--config", str(recipe)])
    for param in params:  # the CLI took each value (the check sets each key to its sample value)
        value = merged
        for part in param.key.split("."):
            value = value[part]
        assert value == param.sample_value(), param.key


def test_num_classes_is_stated_once_per_recipe():
    for recipe in RECIPES:
        model = (yaml.safe_load(recipe.read_text()) or {}).get("model")
        init_args = model.get("init_args", {}) if isinstance(model, dict) else {}
        assert "num_classes" not in init_args, f"{recipe.name}: the model's num_classes follows data.num_classes"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_one_step(recipe, standin_dir, places365_dir, run_cli, capsys, tmp_path):
    data_dir = places365_dir if recipe.stem in PLACES365_RECIPES else standin_dir
    num_classes = 4
    if recipe.stem in CIFAR_RECIPES:
        from test_cifar import write_cifar10, write_cifar100

        num_classes = 10 if CIFAR_RECIPES[recipe.stem] == "cifar10" else 100
        data_dir = (write_cifar10 if num_classes == 10 else write_cifar100)(tmp_path / "cifar")
    tiny = [
        "--data.download", "false", "--data.standin", "false", "--data.data_dir", str(data_dir),
        "--data.num_classes", str(num_classes), "--data.batch_size", "8", "--data.num_workers", "0",
        "--data.pin_memory", "false", "--data.resize_size", "36", "--data.crop_size", "32",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.fast_dev_run", "true",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    code = run_cli("fit", "--config", recipe, *tiny, *NEEDS_A_DOWNLOAD.get(recipe.stem, []))
    assert code == 0, capsys.readouterr().err
