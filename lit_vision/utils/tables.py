"""Plain-text Markdown tables, as the benchmarks and the adversarial report print them."""

from __future__ import annotations


def format_table(rows: list[dict]) -> str:
    """Render a list of dicts as an aligned Markdown table (floats to 3 significant figures)."""
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    body = [[cell(row.get(col, "")) for col in columns] for row in rows]
    widths = [max(len(col), *(len(line[i]) for line in body)) for i, col in enumerate(columns)]
    lines = [
        "| " + " | ".join(col.ljust(w) for col, w in zip(columns, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in body]
    return "\n".join(lines)
