"""The AutoAttack-grade cascade over a whole split in large batches: the images still robust after
each test batch are queued, and the suite runs on them `batch_size` at a time, whatever the
test batch size.

    buffer = SuiteBuffer(AttackSuite(8 / 255, "autoattack"), batch_size=256)
    for images, labels in batches:                       # e.g. one test batch at a time
        for done in buffer.add(model, images[survivors], labels[survivors]):
            done.result.robust                             # per queued image, in queue order
    for done in buffer.flush(model):                     # the rest, at the end of the split
        ...

Why: in a cascade, each test batch's survivors are few (a batch of 64 may leave ~20 after PGD,
fewer after APGD-CE), and APGD-T (9 targets × 100 steps), FAB-T and Square then iterate on a
handful of images each call, where a call's fixed cost per step dominates. The authors'
`run_standard_evaluation` batches the survivors of a whole split the same way.

What a queued image's verdict depends on: the model, the image and its label, and the attacks'
random draws. The draws (random starts, Square's squares) are drawn per call for the call's
whole batch, so an image meets other draws in a queue batch than in its test batch, as it
does in the authors' code with another `batch_size`; an image whose verdict does not hinge on a
draw keeps it. Every call has its own seed, keyed by the call's index and `key` (e.g. the rank).

Pure torch (no Lightning): the evaluation callback and the benchmark share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lit_vision.attacks.autoattack import AttackSuite, SuiteResult
from lit_vision.errors import LitVisionError

__all__ = ["Flushed", "SuiteBuffer"]


@dataclass
class Flushed:
    """One suite call on queued images: its result (per image, in queue order), the labels and
    the per-image tensor given with them to `add` (`carry`, e.g. the PGD verdicts), if any."""

    result: SuiteResult
    labels: torch.Tensor
    carry: torch.Tensor | None


class SuiteBuffer:
    """Queue images across batches and attack them with `suite` in batches of `batch_size`.

    Args:
        suite: the cascade to run.
        batch_size: images per suite call (>= 1).
        key: keys every call's seed besides the call's index (e.g. (rank,), so that the ranks of
            a DDP run draw differently).
    """

    def __init__(self, suite: AttackSuite, batch_size: int, key: tuple[int, ...] = ()) -> None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise LitVisionError(f"The attack suite's batch size must be an integer >= 1, got {batch_size!r}.")
        self.suite = suite
        self.batch_size = int(batch_size)
        self.key = tuple(key)
        self.calls = 0  # suite calls made so far
        self._images: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._carry: list[torch.Tensor] | None = None
        self.pending = 0  # images queued and not yet attacked

    def add(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, carry: torch.Tensor | None = None) -> list[Flushed]:
        """Queue `images` (and their `labels`, and `carry` if given: a per-image tensor handed back
        with each verdict); attack every full batch of the queue now, oldest images first."""
        if images.shape[0] != labels.shape[0] or (carry is not None and carry.shape[0] != labels.shape[0]):
            raise LitVisionError(f"SuiteBuffer.add: {images.shape[0]} images, {labels.shape[0]} labels and a carry of "
                                 f"{None if carry is None else carry.shape[0]}: one per image.")  # fmt: skip
        if self._carry is None and not self._images:
            self._carry = None if carry is None else []
        if (carry is None) != (self._carry is None):
            raise LitVisionError("SuiteBuffer.add: give a carry with every batch or with none.")
        if labels.shape[0]:
            # detach + clone: the test batch's tensors may be inference tensors or reused by the loader.
            self._images.append(images.detach().clone())
            self._labels.append(labels.detach().clone())
            if carry is not None:
                self._carry.append(carry.detach().clone())
            self.pending += labels.shape[0]
        done = []
        while self.pending >= self.batch_size:
            done.append(self._run(model, self.batch_size))
        return done

    def flush(self, model: nn.Module) -> list[Flushed]:
        """Attack whatever is queued (the end of the split), in batches of at most `batch_size`."""
        done = []
        while self.pending:
            done.append(self._run(model, min(self.pending, self.batch_size)))
        self._carry = None
        return done

    def _run(self, model: nn.Module, count: int) -> Flushed:
        images, labels = torch.cat(self._images), torch.cat(self._labels)
        carry = torch.cat(self._carry) if self._carry is not None else None
        self._images, self._labels = [images[count:]], [labels[count:]]
        if carry is not None:
            self._carry = [carry[count:]]
        self.pending -= count
        result = self.suite.run(model, images[:count], labels[:count], key=(self.calls, *self.key))
        self.calls += 1
        return Flushed(result, labels[:count], None if carry is None else carry[:count])
