"""`bench gpu`'s header (what the numbers were measured on) and its JSON + Markdown files."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from lit_vision.utils.tables import format_table


def driver_version() -> str:
    """The NVIDIA driver version from NVML, else from nvidia-smi, else why neither worked."""
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception as nvml_error:  # noqa: BLE001 — the header must never stop the run
        try:
            output = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True,
            )  # fmt: skip
            return output.stdout.strip().splitlines()[0]
        except Exception as smi_error:  # noqa: BLE001
            return f"n/a (pynvml: {nvml_error}; nvidia-smi: {smi_error})"


def collect_header(args: argparse.Namespace) -> dict:
    import lightning

    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU {platform.processor() or platform.machine()}",
        "driver": driver_version() if cuda else "n/a (CPU run)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "lightning": lightning.__version__,
        "tf32 (cudnn conv / matmul)": f"{torch.backends.cudnn.allow_tf32} / {torch.backends.cuda.matmul.allow_tf32}",
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cpu_cores": os.cpu_count(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": "python -m lit_vision.bench gpu " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in sorted(vars(args).items())
            if k not in ("benchmark", "json", "out", "smoke") and v is not None
        ) + (" --smoke" if args.smoke else ""),
    }  # fmt: skip


def progress(row: dict) -> str:
    """A row in a few words, for the progress lines."""
    if row.get("images/s"):
        return f"{row['images/s']:,.1f} images/s"
    return str(row.get("error") or row.get("skipped") or "")


def markdown(results: dict) -> str:
    header = results["header"]
    lines = [f"# GPU benchmark — {header['device']}", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    for name, section in results["sections"].items():
        lines += ["", f"## {name}: {section['title']}", ""]
        lines.append(f"status: {section['status']}; {section.get('seconds', 0):.0f} s")
        lines += [f"- {note}" for note in section["notes"]]
        if section["error"]:
            lines += ["", "```", section["error"].strip(), "```"]
        lines += ["", format_table(section["rows"])]
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: Path) -> Path:
    """Write gpu_bench.json and gpu_bench.md into `out` (each replaced whole, never half-written)."""
    # JSON has no NaN or infinity: they become null.
    clean = json.loads(json.dumps(results, default=str), parse_constant=lambda _: None)
    files = {
        out / "gpu_bench.json": json.dumps(clean, indent=2, allow_nan=False),
        out / "gpu_bench.md": markdown(results),
    }
    for path, text in files.items():
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text)
        os.replace(partial, path)
    return out / "gpu_bench.md"
