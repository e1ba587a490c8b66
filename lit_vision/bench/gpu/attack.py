"""`bench gpu`, section "attack": `python -m lit_vision.bench attack` run from here, fp32.

PGD images/s, ours vs a textbook loop; a Trainer epoch with AdversarialTraining(fraction 0.2)
vs a clean one (see lit_vision/bench/attack.py for what each row measures).
"""

from __future__ import annotations

import argparse

import torch


def attack_rows(args, batch: int, device: torch.device) -> list[dict]:
    from lit_vision.bench import attack

    parser = argparse.ArgumentParser()
    attack.add_arguments(parser)
    attack_args = parser.parse_args(
        [
            "--batch-size", str(batch), "--image-size", str(args.image_size), "--device", str(device),
            "--steps", "2" if args.smoke else "10", "--repeats", str(args.repeats),
            "--epoch-batches", "5" if args.smoke else "20", "--epoch-repeats", "1" if args.smoke else "2",
        ]
    )  # fmt: skip
    return [{"op": f"PGD: {row.pop('measure')}", **row} for row in attack.run(attack_args)]


def attack_section_rows(args, results: dict, deadline: float, rows: list, notes: list) -> None:
    batch = args.batch_size or 256
    notes.append(
        f"`python -m lit_vision.bench attack`, SimpleNet, batch {batch}, fp32 (see lit_vision/bench/attack.py); "
        "ratio at exactly 0.2 = an adversarial-training epoch's cost in clean epochs"
    )
    rows.extend(attack_rows(args, batch, torch.device(args.device)))
