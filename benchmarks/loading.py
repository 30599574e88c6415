"""Validated loading vs a plain read: ``python -m benchmarks.loading``.

Times ``qckit.data.read_pairs`` (parse, validate, build the pairs table) against
``pandas.read_json(path, lines=True)`` (parse only, no checks) on the real samples in
``../shared/data`` (QC train+dev, QI train+dev), best of several repeats in one process. Also times
``validate_file`` (adds counts and warnings) and the line-by-line pass that a broken file takes.
Goal: validated loading no slower than the plain read, on every file.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.common import best_time, peak_rss_mib, shared_data_dir, write_result
from qckit.data import read_pairs, validate_file

NAME = "loading"
FILES = ("cikm-qc-sample/train_QC.jsonl", "cikm-qc-sample/dev_QC.jsonl",
         "qi-en-sample/train_QI.jsonl", "qi-en-sample/dev_QI.jsonl")
REPEATS = 7


def measure(path: Path) -> dict[str, float]:
    rows = len(read_pairs(path))  # also warms the file cache and imports for both contenders
    pd.read_json(path, lines=True)
    pandas_s = best_time(lambda: pd.read_json(path, lines=True), REPEATS)
    read_s = best_time(lambda: read_pairs(path), REPEATS)
    validate_s = best_time(lambda: validate_file(path), REPEATS)
    return {
        "rows": rows, "pandas_read_json_s": round(pandas_s, 4), "read_pairs_s": round(read_s, 4),
        "validate_file_s": round(validate_s, 4), "pandas_rows_per_s": round(rows / pandas_s),
        "read_pairs_rows_per_s": round(rows / read_s), "speedup": round(pandas_s / read_s, 2),
    }


def broken_file_rate(path: Path) -> float:
    """Rows/s of validate_file on a copy with one bad line at the end: the line-by-line pass."""
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / path.name
        broken.write_bytes(path.read_bytes() + b'{"id": "not a number"}\n')
        report = validate_file(broken)
        assert not report.ok, "the broken copy should have an error"
        return round(report.rows / best_time(lambda: validate_file(broken), 3))


def main() -> int:
    data = shared_data_dir()
    missing = [f for f in FILES if data is None or not (data / f).exists()]
    if missing:
        where = data or "../shared/data (or $QCKIT_SHARED_DATA)"
        print(f"benchmarks.loading: real data missing in {where}: {', '.join(missing)}", file=sys.stderr)
        return 2
    per_file = {f: measure(data / f) for f in FILES}
    totals = {k: sum(m[k] for m in per_file.values()) for k in ("rows", "pandas_read_json_s", "read_pairs_s")}
    met = all(m["read_pairs_s"] <= m["pandas_read_json_s"] for m in per_file.values())
    figures = {
        "speedup_total": round(totals["pandas_read_json_s"] / totals["read_pairs_s"], 2),
        "read_pairs_rows_per_s": round(totals["rows"] / totals["read_pairs_s"]),
        "pandas_rows_per_s": round(totals["rows"] / totals["pandas_read_json_s"]),
        "slowest_file_speedup": min(m["speedup"] for m in per_file.values()),
        "rows": totals["rows"],
        "broken_file_validate_rows_per_s": broken_file_rate(data / FILES[2]),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "files": per_file,
    }
    path = write_result(
        NAME, baseline="pandas.read_json(path, lines=True): parse only, no validation", figures=figures,
        goal="validated loading (qckit.data.read_pairs) no slower than pandas.read_json on every real file",
        met=met, data=f"{', '.join(FILES)} from ../shared/data ({totals['rows']:,} rows); best of {REPEATS}",
    )
    for name, m in per_file.items():
        print(f"{name:32} {m['rows']:>7,} rows  pandas {m['pandas_read_json_s'] * 1000:7.1f} ms  "
              f"read_pairs {m['read_pairs_s'] * 1000:7.1f} ms  x{m['speedup']}")
    print(f"goal {'met' if met else 'NOT met'}; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
