"""Tables and result files: what the CLI prints and writes, computed elsewhere."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from superres.atomic import replacing


def write_text_atomic(path: Path, text: str) -> None:
    """A text file that is never half-written."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _json_number(value: Any) -> Any:
    """JSON has no infinity: identical images (PSNR inf) become the string "inf"."""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


def write_json(path: Path, payload: Any) -> None:
    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return _json_number(obj)

    write_text_atomic(path, json.dumps(clean(payload), indent=2) + "\n")


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def format_number(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def benchmark_rows(results: Sequence[Any], published: dict) -> list[dict[str, Any]]:
    """One flat row per (method, input track, dataset, scale), with the published figures
    beside ours (papers publish the clean track only)."""
    rows = []
    for result in results:
        key = (result.method, result.dataset, result.scale)
        paper = published.get(key, (None, None)) if result.degradation == "clean" else (None, None)
        rows.append(
            {
                "method": result.method,
                "input": result.degradation,
                "dataset": result.dataset,
                "scale": result.scale,
                "psnr": round(result.psnr, 4),
                "ssim": round(result.ssim, 5),
                "published_psnr": paper[0],
                "published_ssim": paper[1],
            }
        )
    return rows


def benchmark_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Methods x inputs x scales down, datasets across: "ours PSNR/SSIM (published)"."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    keys = list(dict.fromkeys((r["method"], r["input"], r["scale"]) for r in rows))
    with_inputs = any(r["input"] != "clean" for r in rows)
    cell = {(r["method"], r["input"], r["scale"], r["dataset"]): r for r in rows}
    lines = []
    for method, source, scale in keys:
        line = [method, *([source] if with_inputs else []), f"x{scale}"]
        for dataset in datasets:
            r = cell.get((method, source, scale, dataset))
            if r is None:
                line += ["-", "-"]
                continue
            ours = f"{r['psnr']:.2f} / {r['ssim']:.4f}"
            paper = format_number(r["published_psnr"], 2)
            if r["published_ssim"] is not None:
                paper += f" / {r['published_ssim']:.4f}"
            line += [ours, paper]
        lines.append(line)
    columns = ["method", *(["input"] if with_inputs else []), "scale"]
    for dataset in datasets:
        columns += [f"{dataset} PSNR / SSIM", f"{dataset} published"]
    return markdown_table(columns, lines)
