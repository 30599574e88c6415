"""Runs side by side on one HTML page: headline figures, F1 per language, parameters, differences marked.

``qckit compare RUN RUN [...]`` writes the page. The first run is the reference: a figure another run beats
by a point or more is marked better, one it loses by a point or more worse; the best run of each figure is in
bold. Parameters are listed where the runs differ (the reference's value first), then how many keys they share.
The page holds no script, loads nothing and carries the report's Content-Security-Policy; a run's text (ids,
parameter values, language codes) is escaped.

Example:
    >>> from qckit.compare import compare_runs
    >>> path = compare_runs(["outputs/a", "outputs/b"])        # outputs/compare-a-b.html
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from qckit import TASKS
from qckit.calibrate import thresholds_from_metrics
from qckit.report import CSP, INDEX_STYLE, REPORT_FILE_MODE, language_table, verdict_lines
from qckit.runs import Run, write_text_atomic
from qckit.steps import CALIBRATION, TRAINING

# a difference of at least this much F1 against the reference run is marked (one point)
MARGIN = 0.01
CHANGED = " class='changed'"
STYLE = """
td.better { background: #e3f4e3; } td.worse { background: #fbe3e3; } td.best { font-weight: 700; }
tr.differs th { color: #8a4b00; } td.changed { background: #fff2cc; }
table.compare td, table.compare th { padding: .2rem .6rem; text-align: right; }
table.compare th:first-child, table.compare td.key { text-align: left; }
"""


class CompareError(ValueError):
    """A run cannot be compared (not a run directory); the message says which."""


def _runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    runs = [Run(d) for d in run_dirs]
    if len(runs) < 2:
        raise CompareError("give at least two runs to compare")
    for run in runs:
        if not run.root.is_dir() or not (run.path("params.yaml").is_file() or run.path("metrics").is_dir()):
            raise CompareError(f"{run.root}: not a run directory (no params.yaml, no metrics/)")
    return runs


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Column names: run ids, or paths where two runs share an id."""
    ids = [run.id for run in runs]
    return [run.id if ids.count(run.id) == 1 else str(run.root) for run in runs]


def _read(run: Run, step: str) -> dict[str, Any]:
    return run.read_metrics(step) if run.metrics_path(step).is_file() else {}


def _seconds(run: Run) -> float | None:
    path = run.path("run_status.json")
    if not path.is_file():
        return None
    status = json.loads(path.read_text(encoding="utf-8")) or {}
    steps = [s for s in status.get("steps", []) if isinstance(s, Mapping)]
    return sum(float(s.get("seconds") or 0) for s in steps) if steps else None


def headline_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Per task: dev F1 at held-out thresholds (and at the threshold fitted on dev), the all-positive F1, the
    threshold; then training rows and run time. One column per run; a figure a run lacks is missing."""
    columns: dict[str, dict[str, Any]] = {}
    for label, run in zip(run_labels(runs), runs):
        tasks = _read(run, CALIBRATION).get("tasks") or {}
        col: dict[str, Any] = {}
        for task in [t for t in TASKS if t in tasks] + sorted(set(tasks) - set(TASKS)):
            m = tasks[task] if isinstance(tasks[task], Mapping) else {}
            col[f"{task} dev F1, held-out thresholds"] = m.get("f1_held_out_threshold")
            col[f"{task} dev F1, threshold fitted on dev"] = m.get("f1")
            col[f"{task} all-positive F1"] = m.get("all_positive_f1")
            col[f"{task} threshold"] = m.get("threshold")
        models = _read(run, TRAINING).get("models") or {}
        rows = [m.get("train_rows") for m in models.values() if isinstance(m, Mapping)]
        col["training rows"] = sum(r for r in rows if isinstance(r, (int, float))) if rows else None
        col["run time (s)"] = _seconds(run)
        columns[label] = col
    return pd.DataFrame(columns)


def language_f1(runs: Sequence[Run]) -> tuple[pd.DataFrame, set[tuple[str, str]]]:
    """Dev F1 per (task, language) at each run's calibrated thresholds, one column per run, and the
    (task, language) pairs some run marks zero-shot."""
    columns, zero_shot = {}, set()
    for label, run in zip(run_labels(runs), runs):
        found = language_table(run)
        if found is None:
            continue
        table, zs = found
        columns[label] = table.set_index(["task", "language"])["f1"]
        for task in table["task"].unique():
            langs = zs.get(task, []) if isinstance(zs, Mapping) else zs
            zero_shot |= {(task, lang) for lang in langs}
    frame = pd.DataFrame(columns).reindex(columns=run_labels(runs))
    return frame.sort_index(), zero_shot


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def parameter_differences(runs: Sequence[Run]) -> tuple[pd.DataFrame, int]:
    """The parameters whose values differ between the runs (one column per run) and how many are the same."""
    flat = {}
    for label, run in zip(run_labels(runs), runs):
        path = run.path("params.yaml")
        flat[label] = _flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}
    keys = sorted(set().union(*(f.keys() for f in flat.values())))
    missing = object()
    rows, same = {}, 0
    for key in keys:
        values = [f.get(key, missing) for f in flat.values()]
        if all(v == values[0] for v in values):
            same += 1
        else:
            rows[key] = ["(absent)" if v is missing else v for v in values]
    if not rows:
        return pd.DataFrame(columns=list(flat)), same
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(flat))
    return table, same


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _fmt(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if isinstance(value, int) or number.is_integer() and abs(number) >= 100:
        return f"{number:,.0f}"
    return f"{number:.4f}" if abs(number) < 10 else f"{number:,.1f}"


def _figure_rows(table: pd.DataFrame, higher_is_better: Mapping[str, bool], labels: Sequence[str]) -> str:
    """Rows of figures with the better / worse / best marks; a row key missing from ``higher_is_better`` is
    not judged."""
    e = html.escape
    out = []
    for key, row in table.iterrows():
        name = " ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        values = [_number(row.get(label)) for label in labels]
        judged = higher_is_better.get(name)
        present = [v for v in values if v is not None]
        best = (max(present) if judged else min(present)) if judged is not None and present else None
        cells = []
        for i, (label, value) in enumerate(zip(labels, values)):
            classes = []
            if judged is not None and value is not None:
                ref = values[0]
                if i and ref is not None and (value - ref) * (1 if judged else -1) >= MARGIN:
                    classes.append("better")
                elif i and ref is not None and (ref - value) * (1 if judged else -1) >= MARGIN:
                    classes.append("worse")
                if len(present) > 1 and value == best:
                    classes.append("best")
            cls = f" class='{' '.join(classes)}'" if classes else ""
            cells.append(f"<td{cls}>{e(_fmt(row.get(label)))}</td>")
        out.append(f"<tr><td class='key'>{e(name)}</td>{''.join(cells)}</tr>")
    return "".join(out)


def render_compare(runs: Sequence[Run]) -> str:
    """The comparison page (see the module docstring)."""
    e = html.escape
    labels = run_labels(runs)
    head = "".join(f"<th>{e(label)}</th>" for label in labels)
    headline = headline_table(runs)
    judged = {k: True for k in headline.index if "F1" in k and "all-positive" not in k}  # the floor is no score
    calibrations = [_read(run, CALIBRATION) for run in runs]  # each run's step 06 metrics, read once
    verdicts = "".join(
        f"<tr><td class='key'>{e(label)}</td><td>{' '.join(e(v.text) for v in verdict_lines(calibration))}"
        f"</td></tr>" for label, calibration in zip(labels, calibrations))
    by_language, zero_shot = language_f1(runs)
    language_rows = _figure_rows(by_language, {" ".join(k): True for k in by_language.index}, labels)
    zs_note = (", ".join(f"{t} {lang}" for t, lang in sorted(zero_shot)) or "none")
    params, same = parameter_differences(runs)
    param_rows = "".join(
        "<tr class='differs'><th>{}</th>{}</tr>".format(
            e(key), "".join(f"<td{CHANGED if i and v != row.iloc[0] else ''}>{e(str(v))}</td>"
                            for i, v in enumerate(row)))
        for key, row in params.iterrows())
    thresholds = [thresholds_from_metrics(c)[0] if c.get("thresholds") else {} for c in calibrations]
    threshold_note = "; ".join(f"{label}: " + (", ".join(f"{t} {v:.3f}" for t, v in th.items()) or "not calibrated")
                               for label, th in zip(labels, thresholds))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>qckit compare {e(' vs '.join(labels))}</title>
<style>{INDEX_STYLE}{STYLE}</style></head>
<body><div class="overview">
<h1>qckit compare: {' vs '.join(f'<code>{e(label)}</code>' for label in labels)}</h1>
<p class="note">The first run, <code>{e(labels[0])}</code>, is the reference: a figure another run beats by a
point or more is green, one it loses by a point or more red; the best of each row is in bold.</p>
<h2>Verdicts</h2>
<table class="compare" id="verdicts"><tr><th>run</th><th>verdict</th></tr>{verdicts}</table>
<h2>Headline figures</h2>
<table class="compare" id="headline"><tr><th>figure</th>{head}</tr>{_figure_rows(headline, judged, labels)}</table>
<h2>Dev F1 per language</h2>
<p class="note">At each run's calibrated thresholds ({e(threshold_note)}). Zero-shot in some run: {e(zs_note)}.</p>
<table class="compare" id="languages"><tr><th>task, language</th>{head}</tr>{language_rows or ''}</table>
<h2>Parameters that differ</h2>
<table class="compare" id="params"><tr><th>parameter</th>{head}</tr>{param_rows}</table>
<p class="note">{same:,} parameters are the same in every run.</p>
</div></body></html>
"""


def default_output(runs: Sequence[Run]) -> Path:
    """``compare-<id>-<id>....html`` beside the first run."""
    name = "-".join(run.id for run in runs)[:150]
    return runs[0].root.parent / f"compare-{name}.html"


def compare_runs(run_dirs: Sequence[str | Path], output: str | Path | None = None) -> Path:
    """Write the comparison page of the runs (the first is the reference); returns its path."""
    runs = _runs(run_dirs)
    path = Path(output) if output is not None else default_output(runs)
    if path.is_dir():
        path = path / default_output(runs).name
    write_text_atomic(path, render_compare(runs), mode=REPORT_FILE_MODE)
    return path
