"""`python -m lit_vision.bench gpu`: the smoke run exercises every section on the CPU (the compiled
resident step included), a failing section is recorded while the others still run, a failing
fit turns the sync debug mode back off, each fit's start-up (a compile included) stays outside its
timed window, and nothing imports jsonargparse (the GPU machine has none)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from lit_vision.bench import gpu
from lit_vision.bench.__main__ import main
from lit_vision.bench.gpu import fits, resident
from lit_vision.bench.gpu.budget import COMPILE_EXPECTED_S, Allowance, allowance
from lit_vision.models.registry import list_models



def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.slow
def test_smoke_run_measures_every_section(tmp_path):
    main(["gpu", "--smoke", "--profile", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "gpu_bench.json").read_text())
    sections = results["sections"]
    assert set(sections) == {"models", "pipeline", "resident", "ops", "attack"}
    for name, section in sections.items():
        assert section["status"] == "ok", (name, section["error"], section["rows"])
        assert section["rows"], name
        assert not [row for row in section["rows"] if "error" in row or "skipped" in row], name

    models = sections["models"]["rows"]
    assert {row["arch"] for row in models} == set(list_models())  # every registered architecture
    assert {"SimpleNet", "CustomNet1", "CustomNet2", "ResNet18", "ViT"} <= set(list_models())
    assert {row["variant"] for row in models} == {"fp32", "bf16", "bf16+channels_last"}  # smoke: no compile
    assert all(_positive(row["images/s"]) and row["batch"] == 4 for row in models)

    # Each fit on two rows: its start-up (warm-up steps included), then its timed window.
    pipeline = sections["pipeline"]["rows"]
    assert [row["phase"] for row in pipeline] == ["start-up + 5 warm-up steps (untimed)", "timed"] * 4
    timed = pipeline[1::2]
    assert {(row["arch"], row["cache"]) for row in timed} == {
        (arch, cache) for arch in ("SimpleNet", "ResNet18") for cache in ("no", "yes")
    }
    assert all(_positive(row["images/s"]) and row["steps timed"] == 2 for row in timed)
    assert all(_positive(row["set-up s"]) and _positive(row["first steps s"]) for row in pipeline[::2])
    assert "generated stand-in, 4 classes" in sections["pipeline"]["notes"][0]
    # --profile: one SimpleProfiler summary per fit, naming the training step's hooks.
    profiles = sorted(tmp_path.glob("profile_*.txt"))
    assert len(profiles) == 4 + 5 and all("training_step" in p.read_text() for p in profiles)
    assert sum(p.name.startswith("profile_resident_") for p in profiles) == 5

    # The resident rows beside the loader's (smoke: SimpleNet's three paths, its compiled step
    # included, and simplenet_robust's two uncompiled ones), each fit's start-up on its own row.
    resident = sections["resident"]["rows"]
    fits = [("SimpleNet", "loader+cache"), ("SimpleNet", "resident"), ("SimpleNet", "resident+compile step"),
            ("simplenet_robust", "loader+cache"), ("simplenet_robust", "resident")]  # fmt: skip
    assert [(row["recipe"], row["path"]) for row in resident] == [fit for fit in fits for _ in range(2)]
    startups, timed = resident[::2], resident[1::2]
    assert all(row["phase"] == "timed" and row["steps timed"] == 2 for row in timed)
    assert all(_positive(row["images/s"]) and _positive(row["60-epoch min"]) for row in timed)
    assert all(row["phase"].startswith("start-up") and _positive(row["first steps s"]) for row in startups)
    assert timed[1]["workers"] == "none" and timed[1]["model options"] == "channels_last"
    assert timed[2]["model options"] == "channels_last+compile=step"
    # The compile happened in the first steps, outside the timed window, within its allowance.
    assert startups[2]["first steps s"] > startups[1]["first steps s"]
    assert startups[2]["allowance s"] == 300.0  # --compile-reserve-s, smoke default
    assert timed[3]["model options"] == "weight_decay=0.0005"  # configs/simplenet_robust.yaml
    assert timed[4]["model options"] == "weight_decay=0.0005+channels_last"

    ops = sections["ops"]["rows"]
    assert sum(row["op"].startswith("conv ") for row in ops) == 14  # 7 layers, fp32 and bf16
    assert sum(row["op"].startswith("SimpleNet step, conv: hand_written (auto) vs torch") for row in ops) == 2
    assert sum(row["op"].startswith("attention ") for row in ops) == 4
    assert all(_positive(row["time ratio"]) for row in ops)
    assert all(row["max diff out"] < 0.1 for row in ops if not row["op"].startswith("SimpleNet"))
    attack = [row for row in sections["attack"]["rows"] if "images/s" in row]
    assert len(attack) == 2 and all(_positive(row["images/s"]) for row in attack)

    header = results["header"]
    assert header["torch"] and header["cpu_cores"] and header["device"]
    markdown = (tmp_path / "gpu_bench.md").read_text()
    assert markdown.startswith(f"# GPU benchmark — {header['device']}")
    assert "## pipeline" in markdown and "| SimpleNet" in markdown


def test_failing_section_is_recorded_and_the_rest_still_runs(tmp_path, monkeypatch):
    def explode(args, results, deadline, rows, notes):
        rows.append({"arch": "SimpleNet", "images/s": 1.0})
        raise RuntimeError("out of memory in the middle of a section")

    def after(args, results, deadline, rows, notes):
        # The failed section is already on disk when the next one runs.
        written = json.loads((tmp_path / "gpu_bench.json").read_text())
        rows.append({"seen status": written["sections"]["explode"]["status"]})

    monkeypatch.setattr(gpu, "SECTIONS", [("explode", "fails", 0.5, explode), ("after", "runs", 0.5, after)])
    summary = gpu.run(gpu_arguments(["--smoke", "--out", str(tmp_path), "--sections", "explode,after"]))
    assert [row["status"] for row in summary] == ["error", "ok"]
    results = json.loads((tmp_path / "gpu_bench.json").read_text())
    failed = results["sections"]["explode"]
    assert "RuntimeError: out of memory in the middle of a section" in failed["error"]
    assert failed["rows"] == [{"arch": "SimpleNet", "images/s": 1.0}]  # rows finished before the error are kept
    assert results["sections"]["after"]["rows"] == [{"seen status": "error"}]
    assert "out of memory in the middle" in (tmp_path / "gpu_bench.md").read_text()


def gpu_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    gpu.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.slow
def test_bench_gpu_does_not_import_jsonargparse():
    code = "import sys, lit_vision.bench.__main__ as m; m.discover(); print('jsonargparse' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_sigterm_mid_section_keeps_the_rows_finished_so_far(tmp_path, monkeypatch):
    def terminated_midway(args, results, deadline, rows, notes):
        rows.append({"arch": "SimpleNet", "images/s": 1.0})
        os.kill(os.getpid(), signal.SIGTERM)  # what `timeout` sends
        time.sleep(5)  # the handler interrupts this
        rows.append({"arch": "never reached"})

    monkeypatch.setattr(gpu, "SECTIONS", [("cut", "cut short", 1.0, terminated_midway)])
    with pytest.raises(SystemExit, match="terminated by signal"):
        gpu.run(gpu_arguments(["--smoke", "--out", str(tmp_path), "--sections", "cut"]))
    results = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert results["sections"]["cut"]["status"] == "interrupted"
    assert results["sections"]["cut"]["rows"] == [{"arch": "SimpleNet", "images/s": 1.0}]
    assert signal.getsignal(signal.SIGTERM) is not gpu._terminated  # the previous handler is back


def test_without_a_gpu_it_says_so_at_once_and_measures_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    main(["gpu", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "no GPU here" in out and "nothing was measured" in out
    assert "--smoke" in out and "--device cpu" in out
    assert not (tmp_path / "out").exists()  # no stand-in generated, no results written
    assert "budget 480 s" not in out  # it never started
    with pytest.raises(SystemExit, match="--device cuda, but there is no GPU here"):
        main(["gpu", "--device", "cuda", "--out", str(tmp_path / "out")])


def test_the_budget_bounds_every_section_even_one_that_ignores_its_deadline(tmp_path, monkeypatch, capsys):
    def stubborn(args, results, deadline, rows, notes):
        while True:  # a row loop that neither checks the deadline nor lets an error stop it
            try:
                time.sleep(0.05)
                rows.append({"step": len(rows)})
            except Exception:  # noqa: BLE001
                continue

    def quick(args, results, deadline, rows, notes):
        rows.append({"left at start (s)": deadline - time.monotonic()})

    monkeypatch.setattr(gpu, "SECTIONS", [("first", "stubborn", 0.5, stubborn), ("second", "quick", 0.5, quick)])
    start = time.monotonic()
    summary = gpu.run(gpu_arguments(["--smoke", "--budget-s", "2", "--out", str(tmp_path), "--sections", "first,second"]))
    assert time.monotonic() - start < 6  # 2 s of budget (+ writing results); unbounded without the cut
    first, second = summary
    assert first["status"].startswith("cut at the end of its budget share") and first["rows"] > 0
    assert second["status"] == "ok"
    results = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert results["sections"]["first"]["seconds"] < 1.5  # its 1 s share plus at most 10% grace
    assert results["sections"]["second"]["rows"][0]["left at start (s)"] > 0  # never a negative share
    assert "(-" not in capsys.readouterr().out


def test_a_failing_fit_turns_the_sync_debug_mode_back_off(tmp_path, monkeypatch):
    """A resident fit on CUDA that fails after its timed window opened (out of memory, a compile
    error) never reaches `on_train_end`: the sync debug mode its timer turned on must still be
    turned off, or every later section would run with it."""
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    monkeypatch.setattr(fits, "synchronize", lambda device: None)

    def failing_fit(*args, timer, **kwargs):
        timer.on_train_batch_start(argparse.Namespace(global_step=fits.SKIPPED_STEPS), None, None, 0)
        raise RuntimeError("CUDA out of memory in the middle of a fit")

    monkeypatch.setattr(fits, "measure_fit", failing_fit)
    args = gpu_arguments(["--smoke", "--out", str(tmp_path)])
    gpu.resolve_defaults(args)
    args.device = "cuda"
    rows: list = []
    resident.resident_rows(args, {"sections": {}}, time.monotonic() + 600, rows, [])
    assert modes == ["warn", 0] * len(rows)  # on, then off again, for every fit
    assert len(rows) == 5 and all("CUDA out of memory" in row["error"] for row in rows)


def test_each_fit_gets_its_start_up_allowance_beside_its_timed_window():
    compiles = [False, True, False]
    first = allowance(compiles, 0, left_s=100.0, fit_seconds=10.0, compile_allowance_s=60.0)
    # The window is the fair share left once every remaining start-up is set aside, at most --fit-seconds.
    assert first == Allowance(startup_s=30.0, timed_s=10.0)
    compiled = allowance(compiles, 1, left_s=50.0, fit_seconds=10.0, compile_allowance_s=60.0)
    assert compiled.timed_s == pytest.approx((50.0 - COMPILE_EXPECTED_S - 3.0) / 2)
    assert compiled.startup_s == pytest.approx(50.0 - compiled.timed_s)  # the compile allowance, within what is left
    assert compiled.total_s == pytest.approx(50.0)
    short = allowance(compiles, 1, left_s=30.0, fit_seconds=10.0, compile_allowance_s=60.0)
    assert isinstance(short, str) and "section budget spent" in short and "raise --budget-s" in short


def test_the_timer_closes_the_window_after_its_seconds_not_counting_the_start_up(monkeypatch):
    # A clock the test moves (no sleeps: a loaded machine cannot make it flaky).
    clock = [1000.0]
    monkeypatch.setattr(fits, "time", argparse.Namespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(fits, "synchronize", lambda device: None)
    timer = fits.FitTimer(torch.device("cpu"), timed_s=10.0)
    trainer = argparse.Namespace(global_step=0, should_stop=False)
    for step in range(fits.SKIPPED_STEPS):  # a long start-up (a compile) before the window
        trainer.global_step = step
        timer.on_train_batch_start(trainer, None, None, step)
        clock[0] += 60.0
        timer.on_train_batch_end(trainer, None, None, None, step)
    assert not trainer.should_stop and not timer.steps
    trainer.global_step = fits.SKIPPED_STEPS
    timer.on_train_batch_start(trainer, None, None, 0)
    clock[0] += 9.0
    timer.on_train_batch_end(trainer, None, None, None, 0)
    assert not trainer.should_stop and timer.steps == 1
    timer.on_train_batch_start(trainer, None, None, 1)
    clock[0] += 1.0
    timer.on_train_batch_end(trainer, None, None, None, 1)
    assert trainer.should_stop and timer.steps == 2
    assert timer.start - timer.first_step == 5 * 60.0  # the start-up, outside the window
