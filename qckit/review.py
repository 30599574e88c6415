"""Review flagged labels by hand: a CSV sheet a person fills in, and their verdicts brought back into the run.

``export_review`` writes the sheet from step 04's scores (``data/noise_scores.parquet``): per confidence
level (default 0.7, 0.8, 0.9: the paper inspects 50 flagged rows per level), a seeded random sample of the
flagged rows whose confidence, the detector's p(opposite of the given label), is at or above it
(``qckit.noise.review_sample``). The levels nest: a row drawn for 0.7 with confidence 0.93 also counts for
0.8 and 0.9 and appears once, its ``levels`` cell listing every level it was drawn for. Each level's rows
are a simple random sample of the flagged rows at or above it, so the share of wrong labels among them
estimates the precision of the flags at that level without bias. The rows come in the random order: a
person who reviews from the top and stops anywhere still leaves every level unbiased.

The sheet is UTF-8 with a byte-order mark (Excel reads non-ASCII text right only so), comma-separated, one
header line:

======================  =====================================================================================
``key``                 the row: ``<task>:<id>`` (``#2``, ``#3``... on later rows of an id repeated in a task)
``task``, ``language``  as in the data
``query``, ``target``   the pair (the category path for QC, the item title for QI)
``label``               the given label: 1 relevant, 0 not relevant
``p_yes``               the detector's probability that the pair is relevant
``confidence``          its probability for the opposite of the given label
``levels``              the confidence levels the row was drawn for, space-separated (``0.7 0.8``)
``verdict``             empty: the person fills it in
======================  =====================================================================================

Verdicts (case and surrounding spaces do not matter): ``wrong``, ``noise``, ``noisy``, ``flip``, ``1``: the
given label is wrong; ``ok``, ``correct``, ``right``, ``keep``, ``0``: it is right; ``unsure``, ``?``: looked
at, cannot tell (not counted); empty: not reviewed. Anything else is refused, naming the file, line and
column. Other columns a person adds (a note) are ignored; rows may be left out, not added.

Safe to open: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be read
as a formula by a spreadsheet, so it is written with a leading apostrophe (the usual guard, shown as text;
``qckit.sheets.guard_cell``); a cell starting with an apostrophe gets one more, so ``import_review`` strips
exactly one back.

``import_review`` reads a filled sheet back while holding the run's lock (``qckit.pipeline.lock_run``: it
never races a running chain), checks every row against the run (the key a flagged row of step 04, each
level at most the row's confidence), and writes ``data/review_verdicts.parquet`` and
``metrics/04_noise_review.json`` (the precision per level with a Wilson 95% interval), each atomically. It
replaces an earlier import and changes no file of any step.

Example:
    >>> export_review("outputs/demo-1", "review.csv", per_level=50, levels=(0.7, 0.8, 0.9))
    >>> # ... a person fills in the verdict column ...
    >>> import_review("outputs/demo-1", "review.csv")["precision_by_level"]
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit.noise import REVIEW_LEVELS, check_levels, precision_by_level, review_sample
from qckit.pipeline import lock_run
from qckit.runs import Run, atomic_path
from qckit.sheets import SHEET_FILE_MODE, guard_cell, unguard_cell
from qckit.steps import NOISE
from qckit.steps.noise import REVIEW_METRICS, VERDICTS_TABLE, scores_digest

COLUMNS = ["key", "task", "language", "query", "target", "label", "p_yes", "confidence", "levels", "verdict"]
REQUIRED = ("key", "levels", "verdict")
VERDICT_WORDS = {
    "wrong": ("wrong", "noise", "noisy", "flip", "1"),
    "correct": ("ok", "correct", "right", "keep", "0"),
    "unsure": ("unsure", "?"),
}


class ReviewError(ValueError):
    """The review cannot be done as asked (no such run, step 04 not done, the run busy, bad options)."""


class SheetError(ReviewError):
    """A filled sheet that cannot be read back; the message names the file, the line and the column."""


# ------------------------------------------------------------------------------------------ cells
def row_key(task: Any, id_: Any) -> str:
    """A row's key in the sheet: ``<task>:<id>``."""
    return f"{task}:{id_}"


def row_keys(scores: pd.DataFrame) -> list[str]:
    """``row_key`` of every row; an id repeated within a task gets ``#2``, ``#3``... on its later rows, in
    the table's order, so every key names one row."""
    keys = pd.Series([row_key(t, i) for t, i in zip(scores["task"], scores["id"])], dtype=object)
    repeat = keys.groupby(keys).cumcount().to_numpy()
    return [k if n == 0 else f"{k}#{n + 1}" for k, n in zip(keys, repeat)]


def parse_verdict(word: str) -> str | None:
    """``wrong``, ``correct``, ``unsure`` or None (empty) for a verdict cell; ValueError for other words."""
    word = word.strip().lower()
    if not word:
        return None
    for verdict, words in VERDICT_WORDS.items():
        if word in words:
            return verdict
    raise ValueError(f"{_quote(word)} is not a verdict; write " + ", ".join(
        f"{'|'.join(words)} ({meaning})" for words, meaning in zip(
            VERDICT_WORDS.values(), ("the label is wrong", "it is right", "cannot tell"))) + " or leave it empty")


def parse_levels_option(text: str) -> tuple[float, ...]:
    """``--levels 0.7,0.8,0.9`` as checked levels; ReviewError naming the option otherwise."""
    try:
        return check_levels(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise ReviewError(f"--levels {text!r}: {err}") from None


def _quote(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ------------------------------------------------------------------------------------------ export
@dataclass
class ExportSummary:
    """What ``export_review`` wrote: the sheet, its rows, and per level the flagged rows and rows drawn."""

    path: Path
    rows: int
    levels: pd.DataFrame  # level, flagged (rows at or above it), drawn


def _flagged_scores(run: Run) -> pd.DataFrame:
    """Step 04's flagged rows (``noise_scores`` where ``flagged``), in the table's order, with their key."""
    if not run.root.is_dir():
        raise ReviewError(f"{run.root}: no such run directory")
    if not run.metrics_path(NOISE).is_file():
        raise ReviewError(f"{run.root}: step {NOISE} has not run; run it first (qckit run ... --steps 04)")
    if not run.read_metrics(NOISE).get("enabled") or not run.has_table("noise_scores"):
        raise ReviewError(f"{run.root}: step {NOISE} scored nothing (noise.enabled is false): nothing to review")
    scores = run.read_table("noise_scores")
    scores.insert(0, "key", row_keys(scores))
    return scores.loc[scores["flagged"].to_numpy(dtype=bool)].reset_index(drop=True)


def export_review(run_dir: str | Path, output: str | Path | None = None, *, levels=REVIEW_LEVELS,
                  per_level: int = 50, seed: int = 0) -> ExportSummary:
    """Write the review sheet of a run's flagged rows (see the module docstring); returns what it wrote.

    Args:
        run_dir: a run whose step 04 is done.
        output: the sheet to write; None: ``<run-id>-review.csv`` in the working folder. An existing file
            is refused (it may hold a person's verdicts).
        levels: confidence levels; per_level: rows drawn per level; seed: seed of the draw.
    """
    run = Run(run_dir)
    try:
        levels = check_levels(levels)
    except ValueError as err:
        raise ReviewError(str(err)) from None
    if per_level < 1:
        raise ReviewError(f"--per-level must be at least 1, got {per_level}")
    path = Path(output) if output is not None else Path(f"{run.id}-review.csv")
    if path.exists():
        raise ReviewError(f"{path} already exists (it may hold verdicts): choose another --output or remove it")
    flagged = _flagged_scores(run)
    if flagged.empty:
        raise ReviewError(f"{run.root}: step {NOISE} flagged no rows: nothing to review")
    drawn = review_sample(flagged["confidence"], levels=levels, per_level=per_level, seed=seed)
    rows = flagged.iloc[drawn["position"].to_numpy()]
    try:
        with atomic_path(path, mode=SHEET_FILE_MODE) as tmp, open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for (_, row), row_levels in zip(rows.iterrows(), drawn["levels"]):
                cells = [row["key"], row["task"], row["language"], row["query"], row["target"], int(row["label"]),
                         f"{row['p_yes']:.4f}", f"{row['confidence']:.4f}", " ".join(f"{v:g}" for v in row_levels),
                         ""]
                writer.writerow([guard_cell(str(c)) for c in cells])
    except OSError as err:
        raise ReviewError(f"cannot write {path}: {err.strerror or err}") from None
    conf = flagged["confidence"].to_numpy()
    counts = pd.DataFrame({"level": levels, "flagged": [int((conf >= v).sum()) for v in levels],
                           "drawn": [sum(v in lv for lv in drawn["levels"]) for v in levels]})
    return ExportSummary(path, len(rows), counts)


# ------------------------------------------------------------------------------------------ import
def read_sheet(path: str | Path) -> list[tuple[int, dict[str, str]]]:
    """The rows of a review sheet as (first line, {column: cell}), cells unguarded; SheetError otherwise.

    Accepts what spreadsheets write back: a byte-order mark, ``;`` or tab as separator, fewer cells than
    the header (the trailing ones empty); blank rows are skipped.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ReviewError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise SheetError(f"{path}:{line}: not UTF-8 text; save the sheet as CSV UTF-8") from None
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows, start = [], 1
    try:
        header = [unguard_cell(c).strip().lower() for c in next(reader, [])]
        start = reader.line_num + 1
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise SheetError(f"{path}:1: missing column {', '.join(map(repr, missing))} (the header has "
                             f"{', '.join(map(repr, header)) or 'nothing'}; the sheet needs {', '.join(REQUIRED)})")
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise SheetError(f"{path}:{line}: {len(cells)} cells, the header has {len(header)}")
            rows.append((line, {h: unguard_cell(c) for h, c in zip(header, cells + [""] * len(header))}))
    except csv.Error as err:
        raise SheetError(f"{path}:{start}: not a readable CSV row: {err}") from None
    return rows


def _check_row(path: Path, line: int, cells: dict[str, str], known: pd.DataFrame,
               seen: dict[str, int]) -> dict[str, Any]:
    """One sheet row checked against the run's flagged rows: key, levels, verdict."""
    where = f"{path}:{line}"
    key = cells["key"].strip()
    if not key:
        raise SheetError(f"{where}: key: empty")
    if key not in known.index:
        raise SheetError(f"{where}: key: {_quote(key)} is not a flagged row of this run's step {NOISE}")
    if key in seen:
        raise SheetError(f"{where}: key: {_quote(key)} is already on line {seen[key]}")
    seen[key] = line
    row = known.loc[key]
    try:
        levels = check_levels(float(v) for v in cells["levels"].replace(";", " ").split())
    except ValueError as err:
        raise SheetError(f"{where}: levels: {_quote(cells['levels'])}: {err}") from None
    if levels[-1] > row["confidence"] + 1e-9:
        raise SheetError(f"{where}: levels: {levels[-1]:g} is above the row's confidence {row['confidence']:.4f} "
                         "in the run (a sheet of an earlier step-04 result? export a new one)")
    try:
        verdict = parse_verdict(cells["verdict"])
    except ValueError as err:
        raise SheetError(f"{where}: verdict: {err}") from None
    return {"key": key, "task": row["task"], "id": row["id"], "line": line, "levels": list(levels),
            "verdict": verdict, "wrong": {"wrong": True, "correct": False}.get(verdict, pd.NA),
            "label": int(row["label"]), "p_yes": float(row["p_yes"]), "confidence": float(row["confidence"])}


def read_verdicts(path: str | Path, flagged: pd.DataFrame) -> pd.DataFrame:
    """A filled sheet checked against a run's flagged rows (``key, task, id, label, p_yes, confidence``).

    Returns one row per sheet row: ``key, task, id, line, levels, verdict`` (``wrong``, ``correct``,
    ``unsure`` or None), ``wrong`` (True, False or missing), and the row's label and scores in the run.
    """
    known = flagged.set_index("key")
    seen: dict[str, int] = {}
    rows = [_check_row(Path(path), line, cells, known, seen) for line, cells in read_sheet(path)]
    if not rows:
        raise SheetError(f"{path}: no rows below the header")
    out = pd.DataFrame(rows)
    out["wrong"] = out["wrong"].astype("boolean")
    out["id"] = out["id"].astype(flagged["id"].dtype)
    return out


def import_review(run_dir: str | Path, sheet: str | Path) -> dict[str, Any]:
    """Read a filled sheet into the run under its lock (see the module docstring); returns the metrics.

    Raises ``SheetError`` for a sheet that does not fit the run, ``ReviewError`` when the run cannot take
    it, ``qckit.pipeline.RunError`` when a chain is running it.
    """
    run = Run(run_dir)
    if not run.root.is_dir():
        raise ReviewError(f"{run.root}: no such run directory")
    if not Path(sheet).is_file():
        raise ReviewError(f"{sheet}: no such file")
    with lock_run(run):
        flagged = _flagged_scores(run)
        verdicts = read_verdicts(sheet, flagged)
        levels = sorted({v for lv in verdicts["levels"] for v in lv})
        table = precision_by_level(verdicts, levels=levels, confidence=flagged["confidence"])
        counts = verdicts["verdict"].value_counts()
        metrics = {
            "file": str(Path(sheet).resolve()), "imported": dt.datetime.now().isoformat(timespec="seconds"),
            "rows": len(verdicts), **{v: int(counts.get(v, 0)) for v in ("wrong", "correct", "unsure")},
            "reviewed": int(counts.get("wrong", 0) + counts.get("correct", 0)),
            "not_reviewed": int(verdicts["verdict"].isna().sum()), "levels": levels,
            "precision_by_level": _records(table), "noise_scores_sha256": scores_digest(run),
        }
        metrics["headline"] = {"reviewed": metrics["reviewed"], **{
            f"precision_at_{r['level']:g}": round(r["precision"], 4) for r in metrics["precision_by_level"]
            if r["reviewed"]}}
        run.write_table(VERDICTS_TABLE, verdicts)
        run.write_metrics(REVIEW_METRICS, metrics)
    return metrics


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain JSON values: NaN (a level nobody reviewed) becomes None."""
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in table.astype(object).to_dict(orient="records")]
