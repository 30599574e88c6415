"""Print a table of every benchmark result: ``python -m benchmarks.show`` (``make bench`` ends with it).

Example:
    $ python -m benchmarks.show
    benchmark  met  date        goal                                  key figures
    loading    yes  2026-11-25  validated loading no slower than ...  speedup=3.1, ...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR

COLUMNS = ("benchmark", "met", "date", "goal", "key figures")
WIDTHS = {"goal": 60, "key figures": 80}
KEY_FIGURES = 3


def _figure_text(figures: dict[str, Any]) -> str:
    """The first few scalar figures as ``name=value``; nested tables are left to the JSON."""
    parts = []
    for name, value in figures.items():
        if isinstance(value, float):
            parts.append(f"{name}={value:.4g}")
        elif isinstance(value, (int, str, bool)):
            parts.append(f"{name}={value}")
        if len(parts) == KEY_FIGURES:
            break
    return ", ".join(parts)


def _cut(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def result_rows(results_dir: Path = RESULTS_DIR) -> list[dict[str, str]]:
    """One row per results JSON; a file that cannot be read says so instead of stopping the table."""
    rows = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            met = "yes" if result.get("met") else "NO"
            rows.append({"benchmark": result.get("benchmark", path.stem), "met": met,
                         "date": result.get("date", "?"), "goal": result.get("goal", ""),
                         "key figures": _figure_text(result.get("figures", {}))})
        except (OSError, ValueError, AttributeError) as err:
            rows.append({"benchmark": path.stem, "met": "?", "date": "?", "goal": f"unreadable: {err}",
                         "key figures": ""})
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    cells = [[_cut(str(row[c]), WIDTHS.get(c)) for c in COLUMNS] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def main() -> int:
    rows = result_rows()
    if not rows:
        print(f"no benchmark results in {RESULTS_DIR}; run one with `python -m benchmarks.<name>` "
              "or `make bench`")
        return 0
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
