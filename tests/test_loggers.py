"""`--trainer.logger`: any Lightning logger, several at once, each in the run's version_N (the
same N as its checkpoints); CSVLogger needs no save_dir; a missing package is one paragraph;
MLflow against real local tracking stores (a file store, SQLite files: the one named and the
default logs/mlflow.db). Also: a wrong value for a class's typed argument names that argument."""

from __future__ import annotations

import importlib.util
import os

import pytest

from lit_vision.cli import build_cli

ROOT = "logs"
QUICK = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1"]


# ------------------------------------------------------------------------------ parsing
def test_a_file_logger_named_on_the_command_line_gets_a_save_dir(monkeypatch):
    from lit_vision.cli.loggers import add_logger_defaults, default_mlflow_store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    add = ["--trainer.logger.init_args.save_dir", ROOT]
    assert add_logger_defaults(["fit", "--trainer.logger", "CSVLogger"], ROOT) == [
        "fit", "--trainer.logger", "CSVLogger", *add]  # fmt: skip
    assert add_logger_defaults(["--trainer.logger=TensorBoardLogger", "--x", "1"], ROOT) == [
        "--trainer.logger=TensorBoardLogger", *add, "--x", "1"]  # fmt: skip
    both = ["--trainer.logger+=CSVLogger", "--trainer.logger+=MLFlowLogger"]
    store = ["--trainer.logger.init_args.tracking_uri", default_mlflow_store(ROOT)]
    assert add_logger_defaults(both, ROOT) == [both[0], *add, both[1], *store]  # MLflow's save_dir is optional
    assert store[1] == "sqlite:///" + os.path.abspath(os.path.join(ROOT, "mlflow.db"))
    named = ["--trainer.logger", "MLFlowLogger", "--trainer.logger.init_args.tracking_uri", "sqlite:///x.db"]
    assert add_logger_defaults(named, ROOT) == named
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert add_logger_defaults(both[1:], ROOT) == both[1:]  # the environment names the store
    given = ["--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", "elsewhere"]
    assert add_logger_defaults(given, ROOT) == given
    for untouched in (["--trainer.logger", "false"], ["--trainer.logger", "{class_path: CSVLogger}"], ["--trainer.logger"]):
        assert add_logger_defaults(untouched, ROOT) == untouched


def test_a_file_logger_without_save_dir_in_a_config_file_says_what_to_add(tiny_config, run_cli, capsys, tmp_path):
    config = tmp_path / "logger.yaml"
    config.write_text("trainer:\n  logger:\n    class_path: CSVLogger\n")
    assert run_cli("fit", "--config", tiny_config, "--config", config) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "expected Iterable" not in error
    assert "trainer.logger: CSVLogger has no save_dir" in error and "`save_dir: logs`" in error


def test_a_missing_logger_package_is_one_paragraph_naming_the_extra(tiny_config, run_cli, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    assert run_cli("fit", "--config", tiny_config, "--trainer.logger", "MLFlowLogger") == 2
    error = capsys.readouterr().err.strip()
    assert "Traceback" not in error and len(error.splitlines()) == 1
    assert "--trainer.logger MLFlowLogger needs the mlflow package" in error
    assert "pip install 'lit-vision[mlflow]'" in error


def test_a_logger_that_refuses_its_settings_is_one_paragraph_with_its_reason(tiny_config, run_cli, capsys):
    pytest.importorskip("mlflow")
    uri = ["--trainer.logger.init_args.tracking_uri", "bogus://nowhere"]
    assert run_cli("fit", "--config", tiny_config, "--trainer.logger", "MLFlowLogger", *uri) == 2
    error = capsys.readouterr().err.strip()
    assert "Traceback" not in error and len(error.splitlines()) == 1
    assert error.startswith("lit-vision: error: --trainer.logger MLFlowLogger: the logger could not be created")
    assert "bogus" in error and "Does not validate" not in error


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--model.init_args.lr", "fast", "model.init_args.lr = fast: expected float"),
        ("--model.init_args.compile", "maybe", "model.init_args.compile = maybe: expected bool or one of 'model', 'step'"),
        ("--model.init_args.optimizer", "sgdd", "model.init_args.optimizer = sgdd: expected one of 'sgd', 'adamw'"),
    ],
)  # fmt: skip
def test_a_wrong_value_for_a_model_argument_names_that_argument(flag, value, expected, tiny_config, run_cli, capsys):
    assert run_cli("fit", "--config", tiny_config, flag, value) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and len(error.splitlines()) == 1 and "model = " not in error


# -------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_csv_logger_without_save_dir_writes_into_the_runs_version(tiny_config, run_cli, tmp_path):
    assert run_cli("fit", "--config", tiny_config, *QUICK) == 0  # version_0, the default TensorBoard log
    cli = build_cli(["fit", "--config", str(tiny_config), *QUICK, "--trainer.logger", "CSVLogger"])
    assert [type(logger).__name__ for logger in cli.trainer.loggers] == ["CSVLogger"]
    assert (tmp_path / "checkpoints" / "tiny" / "version_1" / "last.ckpt").is_file()
    metrics = (tmp_path / "logs" / "tiny" / "version_1" / "metrics.csv").read_text()
    assert "val/top1" in metrics and "train/loss" in metrics
    assert sorted(p.name for p in (tmp_path / "logs" / "tiny").iterdir()) == ["version_0", "version_1"]


def mlflow_runs(tracking_uri: str, experiment: str) -> dict:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return {run.info.run_name: run for run in client.search_runs([found.experiment_id])}


@pytest.mark.slow
def test_csv_and_mlflow_file_store_at_once_share_the_runs_version(tiny_config, run_cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores unless told
    store = (tmp_path / "mlruns").as_uri()
    loggers = ["--trainer.logger+=CSVLogger", "--trainer.logger+=MLFlowLogger", "--trainer.logger.init_args.tracking_uri", store]
    fit = build_cli(["fit", "--config", str(tiny_config), *QUICK, *loggers])
    assert [type(logger).__name__ for logger in fit.trainer.loggers] == ["CSVLogger", "MLFlowLogger"]
    assert (tmp_path / "logs" / "tiny" / "version_0" / "metrics.csv").is_file()
    last = tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt"
    assert last.is_file()
    run = mlflow_runs(store, "tiny")["version_0"]  # the experiment's name, the run folder's version
    assert run.data.tags["lit_vision.run_folder"] == "logs/tiny/version_0"
    assert run.data.metrics["val/top1"] == pytest.approx(fit.trainer.callback_metrics["val/top1"].item())
    assert run.data.params["num_classes"] == "4"  # the hyperparameters too

    validate = build_cli(["validate", "--config", str(tiny_config), "--ckpt_path", str(last), *loggers])
    assert (tmp_path / "logs" / "tiny" / "eval" / "version_0" / "metrics.csv").is_file()
    evaluation = mlflow_runs(store, "tiny")["eval/version_0"]
    assert evaluation.data.metrics["val/top1"] == pytest.approx(validate.trainer.callback_metrics["val/top1"].item())


@pytest.mark.slow
def test_mlflow_alone_logs_to_a_sqlite_store_and_the_run_folder_keeps_its_log(tiny_config, run_cli, tmp_path):
    pytest.importorskip("mlflow")
    # Imported, not skipped on failure: the [mlflow] extra installs what MLflow's SQL store needs.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fit = build_cli(["fit", "--config", str(tiny_config), *QUICK, "--experiment", "tracked",
                     "--trainer.logger", "MLFlowLogger", "--trainer.logger.init_args.tracking_uri", store])  # fmt: skip
    # TensorBoard stays first: plot, reports and predictions follow trainer.log_dir.
    assert [type(logger).__name__ for logger in fit.trainer.loggers] == ["TensorBoardLogger", "MLFlowLogger"]
    assert list((tmp_path / "logs" / "tracked" / "version_0").glob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints" / "tracked" / "version_0" / "last.ckpt").is_file()
    run = mlflow_runs(store, "tracked")["version_0"]
    assert run.data.metrics["val/top1"] == pytest.approx(fit.trainer.callback_metrics["val/top1"].item())


@pytest.mark.slow
def test_mlflow_with_one_flag_logs_to_the_default_sqlite_store(tiny_config, run_cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    fit = build_cli(["fit", "--config", str(tiny_config), *QUICK, "--trainer.logger", "MLFlowLogger"])
    store = f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}"
    assert (tmp_path / "logs" / "mlflow.db").is_file()  # (MLflow still makes ./mlruns, its artifact root)
    run = mlflow_runs(store, "tiny")["version_0"]
    assert run.data.metrics["val/top1"] == pytest.approx(fit.trainer.callback_metrics["val/top1"].item())


@pytest.mark.slow
def test_wandb_offline_keeps_its_files_in_the_run_folder(tiny_config, run_cli, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # never the network
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # what the run folder must override
    fit = build_cli(["fit", "--config", str(tiny_config), *QUICK, "--trainer.logger", "WandbLogger",
                     "--trainer.logger.init_args.offline", "true"])  # fmt: skip
    wandb_logger = fit.trainer.loggers[-1]
    assert type(wandb_logger).__name__ == "WandbLogger" and wandb_logger.experiment.name == "tiny/version_0"
    assert list((tmp_path / "logs" / "tiny" / "version_0" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert (tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    "option, expected",
    [
        (["--trainer.callbacks.init_args.fraction", "lots"], "trainer.callbacks.init_args.fraction = lots: expected float"),
        (["--trainer.callbacks.init_args.fractio", "0.5"],
         "unknown flag --trainer.callbacks.init_args.fractio: lit_vision.callbacks.adversarial_training.AdversarialTraining "
         "has no argument 'fractio' (did you mean --trainer.callbacks.init_args.fraction?)"),
    ],
)  # fmt: skip
def test_a_callback_argument_mistake_names_the_callbacks_flag(option, expected, tiny_config, run_cli, capsys):
    training = "--trainer.callbacks+=lit_vision.callbacks.adversarial_training.AdversarialTraining"
    assert run_cli("fit", "--config", tiny_config, training, *option) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and len(error.splitlines()) == 1 and "--model.init_args" not in error
