"""`--ckpt_path` as the CLI reads it: `last` or `best` name a file of the newest run of the
experiment, and a file is read safely (`torch.load(weights_only=True)`, clear errors for a
missing, truncated, foreign or unsafe file) and checked against the config (architecture,
class count) before anything is built. Its saved hyperparameters then fill in the model's (as
LightningCLI does): the checkpoint restores its architecture unless the user named a different
one, which is an error that names both sides.
"""

from __future__ import annotations

from lit_vision import console
from lit_vision.checkpoints import CKPT_PATH_KEYWORDS, check_checkpoint_matches, load_lightning_checkpoint
import lit_vision.run_folders as run_folders
from lit_vision.cli.config_files import read_config
from lit_vision.cli.resume import check_something_to_train
from lit_vision.errors import LitVisionError

DEFAULT_MODEL = "lit_vision.models.SimpleNet"
# --ckpt_path as this CLI reads it (Lightning's help describes its own in-process meaning of "last").
CKPT_PATH_HELP = {
    "fit": "Resume a run: a checkpoint file, or 'last' (last.ckpt of the newest checkpoints/<experiment>/version_N/ "
    "holding one) or 'best' (its best-*.ckpt by --checkpoint_monitor). The run continues from that file's epoch, "
    "optimiser and schedule in a new version_N; a run that already reached --trainer.max_epochs trains nothing "
    "(raise it to train longer).",
    "other": "The weights to use: a checkpoint file, or 'last' (last.ckpt of the newest "
    "checkpoints/<experiment>/version_N/ holding one) or 'best' (its best-*.ckpt by --checkpoint_monitor).",
}


def checkpoint_model_settings(subcommand: str, config, root_config, raw_args: list[str]) -> dict | None:
    """Resolve and check the subcommand's `ckpt_path` (rewriting `last`/`best` in `config` to the
    file); return the model settings the checkpoint saved, as a `model:` block for the parser
    (None when there is no file or it saved none)."""
    ckpt_path = config.get("ckpt_path")
    if ckpt_path in ("last", "best"):
        ckpt_path = str(run_folders.resolve_ckpt_keyword(config["experiment"], ckpt_path))
        console.say(f"--ckpt_path {config['ckpt_path']}: using {ckpt_path} (the newest of experiment "
                    f"{config['experiment']!r}).")  # fmt: skip
        config["ckpt_path"] = ckpt_path
    if not ckpt_path or str(ckpt_path) in CKPT_PATH_KEYWORDS or "://" in str(ckpt_path):
        return None
    checkpoint = load_lightning_checkpoint(ckpt_path)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    configured = (config.get("model") or {}).get("class_path")
    explicit = model_named_explicitly(config, root_config, raw_args)
    check_checkpoint_matches(
        checkpoint, ckpt_path, configured if explicit else None, (config.get("data") or {}).get("num_classes")
    )
    if subcommand == "fit":
        trainer = config.get("trainer") or {}
        check_something_to_train(checkpoint, ckpt_path, trainer.get("max_epochs"), trainer.get("max_steps"))
    hparams.pop("_instantiator", None)
    if not hparams:
        return None
    if hparams.get("_class_path"):
        hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
    return hparams


def model_named_explicitly(config, root_config, raw_args: list[str]) -> bool:
    """Whether the user chose the architecture (`--model X` or a config file's `model:`)
    rather than leaving the default."""
    if (config.get("model") or {}).get("class_path") != DEFAULT_MODEL:
        return True
    for token in raw_args:
        if token in ("--model", "--model.class_path") or token.startswith(("--model=", "--model.class_path=")):
            return True
    for path in list(root_config.get("config") or []) + list(config.get("config") or []):
        try:
            content = read_config(str(path))
        except LitVisionError:
            continue  # jsonargparse parsed it already; one it read from elsewhere (an inline string) names no file
        model = content.get("model") if isinstance(content, dict) else None
        if isinstance(model, str) or (isinstance(model, dict) and "class_path" in model):
            return True
    return False
