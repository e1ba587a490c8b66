"""`python -m lit_vision.bench conv` runs end to end (tiny sizes), and its layer list is SimpleNet's.

Other benchmarks import `simplenet_layers()`, so the list is checked against the network itself.
"""

from __future__ import annotations

import torch

from lit_vision.bench.__main__ import main
from lit_vision.bench.conv import simplenet_layers
from lit_vision.nets.simplenet import SimpleCNN


def test_layer_list_is_simplenets() -> None:
    convs = [m for m in SimpleCNN(10).modules() if isinstance(m, torch.nn.Conv2d)]
    layers = simplenet_layers(128)
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (layer["in_channels"], layer["out_channels"], layer["kernel"], layer["stride"], layer["padding"])
        for layer in layers
    ]
    # Input sizes follow the stem (stride 2) and the max-pools (stride 2) of a 128-px image.
    assert [layer["input_hw"] for layer in layers] == [128, 32, 32, 32, 16, 16, 16]
    assert simplenet_layers(64)[2]["input_hw"] == 16


def test_bench_conv_runs(tmp_path, capsys) -> None:
    out = tmp_path / "conv.json"
    argv = ["conv", "--layers", "conv2,conv3", "--batch-size", "2", "--image-size", "16"]
    main(argv + ["--repeats", "1", "--warmup", "0", "--json", str(out)])
    table = capsys.readouterr().out
    assert "conv3 3x3" in table and "conv2 1x1" in table and "conv1" not in table
    import json

    rows = {row["layer"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["conv3 3x3"]["auto"] == "shifted" and rows["conv2 1x1"]["auto"] == "im2col"
    assert rows["conv3 3x3"]["shifted / torch"] > 0 and rows["conv3 3x3"]["im2col / torch"] > 0
    assert torch.get_num_threads() >= 1  # the bench restores the thread count it changed


def test_cuda_bench_without_a_gpu_says_so_and_fails(monkeypatch) -> None:
    import pytest

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        main(["conv", "--device", "cuda"])
    assert "no CUDA device" in str(exit_info.value.code)


def test_layer_comparison_times_and_checks_every_operator() -> None:
    """The per-layer comparison behind the CUDA table (and bench gpu's ops rows), on the CPU:
    errors against float64 for both sides, ratios for each algorithm asked for."""
    from lit_vision.bench.conv_layer import compare_layer, public

    layer = simplenet_layers(16)[2]  # conv3 3x3 at 4x4
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        row = public(compare_layer(layer, 2, dtype, torch.device("cpu"), 0, 1, ("auto", "im2col")))
        assert row["dtype"] == str(dtype).removeprefix("torch.") and row["input"] == "2x64x4x4"
        auto = "shifted" if dtype == torch.float32 else "im2col"
        assert row[f"auto={auto} / torch"] > 0 and row["im2col / torch"] > 0
        assert 0 < row["rel err torch"] < tolerance and 0 < row[f"rel err {auto}"] < tolerance
        assert row["peak MB auto"] > 0 and row["peak MB torch"] > 0
