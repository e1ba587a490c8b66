"""Lightning's model summary without its FLOPs column and "0 Total Flops" line when it counted
nothing: Lightning counts FLOPs only for a model with an `example_input_array`, and ours take
their input size from the data, so it would print a column of zeros on every fit."""

from __future__ import annotations

import logging

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

# Lightning's own logger for the summary, so that it prints where (and as) it always did.
log = logging.getLogger("lightning.pytorch.callbacks.model_summary")


class SummaryWithoutZeroFlops(ModelSummary):
    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs,
    ) -> None:
        if total_flops:
            ModelSummary.summarize(
                summary_data, total_parameters, trainable_parameters, model_size, total_training_modes, total_flops,
                **summarize_kwargs,
            )  # fmt: skip
            return
        columns = [column for column in summary_data if column[0] != "FLOPs"]
        table = _format_summary_table(total_parameters, trainable_parameters, model_size, total_training_modes, 0, *columns)
        log.info("\n" + table.rsplit("\n", 1)[0])  # the last line is "0   Total Flops"
