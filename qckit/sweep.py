"""Parameter sweeps from one command: one run per setting, shared steps run once, one table and one report.

``qckit sweep -p P --set KEY=V1,V2 [--set KEY2=W1,W2] [--grid | --zip]`` answers the questions the method
raises on the user's own model and data, e.g. which translation source helps
(``--set translation.sources=[en],[es],[fr]``), how many hard negatives (``--set
negatives.negatives_per_positive=1,2,3``), semantic or random-catalogue negatives (``--set
negatives.sampling=top,random_catalogue``), how confident a flag must be (``--set noise.threshold=0.7,0.8,0.9``)
or removal against relabelling (``--set noise.action=remove,relabel``).

``KEY`` is a dotted parameter path (``section.field``, deeper for nested sections and mappings). The values
are separated by commas *outside* brackets, braces and quotes, and each is read as YAML: ``3`` is a number,
``top`` a string, ``[en, es]`` a list, ``{QC: 0.4}`` a mapping, ``null`` None; quote a string YAML would read
otherwise (``'no'``, ``'1,5'``). Each setting is validated like a profile before anything runs; an unknown
key or a bad value is a ``ParamsError`` naming the key. Several keys combine as a grid (every combination,
the default) or zipped (the i-th values together; every key needs as many).

Each setting is a run under ``outputs/<sweep-id>/<folder>/``, the folder named after the setting
(``negatives.negatives_per_positive-3``; keys joined by ``__``, list items by ``_``). A step whose inputs
(parameters, notebook, data, earlier steps' outputs) hash the same as in a setting already run is copied,
not executed (``qckit.pipeline``'s ``share_from``): a sweep of a step-05 key runs steps 01-04 once. The
runs go in the order given and stop at the first failed step.

The table has a row per setting and task: dev F1 at held-out thresholds (step 06's ``f1_held_out``: each
query-grouped fold at the threshold fitted on the others) with its bootstrap interval, the all-positive F1
of the same rows, the gain over the first setting with a paired bootstrap interval (both runs' predictions
on the same resampled dev rows), the training rows and the seconds the run's own steps took (a shared
step costs nothing). ``outputs/<sweep-id>/report/`` holds ``index.html`` (the table, a figure per key, the
training curves, which steps each setting ran or shared) and the table as ``sweep.csv`` and ``sweep.json``.

This module also holds what ``qckit.ablation`` (a sweep of the data steps' switches) shares with it:
``experiment_root``, ``run_settings``, ``task_rows`` and the report helpers.

Example:
    >>> from qckit.sweep import parse_set, run_sweep
    >>> parse_set("translation.sources=[en],[es, fr]")
    ('translation.sources', [['en'], ['es', 'fr']])
    >>> result = run_sweep("params/smoke.yaml", [parse_set("training.learning_rate=1e-4,3e-4")])
    >>> result.table, result.report
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from qckit.calibrate import f1_from_counts, held_out_threshold_predictions, labelled
from qckit.config import Params, ParamsError, dump_params, load_params
from qckit.pipeline import ChainResult, RunError, check_run_id, new_run_id, read_marker, run_chain
from qckit.plots import sweep as sweep_plots
from qckit.report import CSP, REPORT_FILE_MODE
from qckit.runs import Run, write_text_atomic
from qckit.steps import CALIBRATION, TRAINING
from qckit.steps.training import curve_frame

Mode = Literal["grid", "zip"]
# keys that name the run rather than configure it: each setting's run is named by the sweep
UNSWEPT_KEYS = ("name", "description")
TABLE_COLUMNS = ["task", "f1_held_out", "f1_held_out_low", "f1_held_out_high", "all_positive_f1",
                 "gain_vs_first", "gain_low", "gain_high", "paired_rows", "train_rows", "seconds"]
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_BRACKETS = {"[": "]", "{": "}"}


# --- the --set option ------------------------------------------------------------------------------------
def split_values(text: str) -> list[str]:
    """The comma-separated pieces of ``text``, splitting only at commas outside brackets, braces and quotes.

    Example:
        >>> split_values("[en, es],[fr],'a,b'")
        ['[en, es]', '[fr]', "'a,b'"]
    """
    pieces, start, stack, quote, escaped, before = [], 0, [], None, False, ","
    for i, char in enumerate(text):
        if quote:  # inside quotes only the closing quote counts (YAML escapes: \" in double quotes, '' in single)
            if escaped:
                escaped = False
            elif (quote == '"' and char == "\\") or (quote == char == "'" and text[i + 1:i + 2] == "'"):
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "'\"" and before in ",[{:":  # a quote opens a scalar only at its start (men's is plain)
            quote = char
        elif char in _BRACKETS:
            stack.append(_BRACKETS[char])
        elif char in "]}":
            if not stack or stack.pop() != char:
                raise ValueError(f"unbalanced {char!r} at character {i + 1} of {text!r}")
        elif char == "," and not stack:
            pieces.append(text[start:i])
            start = i + 1
        before = char if not char.isspace() else before
    if quote or stack:
        raise ValueError(f"unclosed {quote or {v: k for k, v in _BRACKETS.items()}[stack[-1]]!r} in {text!r}")
    return [*pieces, text[start:]]


def parse_set(spec: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` as (key, values read as YAML); ``ValueError`` naming the key when it cannot be read.

    Example:
        >>> parse_set("noise.threshold=0.7,0.8")
        ('noise.threshold', [0.7, 0.8])
    """
    key, sep, text = spec.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise ValueError(f"--set {spec!r}: expected KEY=V1,V2,... with KEY a dotted parameter path "
                         "such as negatives.negatives_per_positive")
    try:
        pieces = split_values(text)
    except ValueError as err:
        raise ValueError(f"--set {key}: {err}") from None
    values = []
    for piece in pieces:
        if not piece.strip():
            raise ValueError(f"--set {key}: empty value in {text!r} (write '' for an empty string)")
        try:
            values.append(yaml.safe_load(piece))
        except yaml.YAMLError as err:
            problem = str(err).splitlines()[0]
            raise ValueError(f"--set {key}: {piece.strip()!r} is not a YAML value ({problem})") from None
    if key.split(".")[0] in UNSWEPT_KEYS:
        raise ValueError(f"--set {key}: the profile's {key} is not swept (each setting's run is named by the sweep)")
    return key, values


def combine(sets: Sequence[tuple[str, Sequence[Any]]], *, mode: Mode = "grid") -> list[dict[str, Any]]:
    """The settings of a sweep: every combination of the values (``grid``) or the i-th of each (``zip``).

    Example:
        >>> combine([("a", [1, 2]), ("b", ["x", "y"])], mode="zip")
        [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    keys = [key for key, _ in sets]
    if not keys:
        raise ValueError("nothing to sweep: give at least one --set KEY=V1,V2")
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"--set {twice[0]} given twice: list all its values in one --set")
    if mode == "zip":
        lengths = {key: len(values) for key, values in sets}
        if len(set(lengths.values())) > 1:
            counts = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise ValueError(f"--zip pairs the values up and needs as many for every key: {counts}")
        rows = zip(*(values for _, values in sets))
    elif mode == "grid":
        rows = itertools.product(*(values for _, values in sets))
    else:
        raise ValueError(f"unknown sweep mode {mode!r}: grid or zip")
    return [dict(zip(keys, row)) for row in rows]


def _place(raw: dict[str, Any], key: str, value: Any) -> None:
    """Put ``value`` at the dotted ``key`` of the dumped parameters, making mappings on the way."""
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"--set {key}={value_text(value)}: {'.'.join(parts[:depth + 1])} is a value, "
                              "not a section")
    node[parts[-1]] = value


def _one_line(err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        problems.append(f"{where}: unknown key" if e["type"] == "extra_forbidden" else f"{where}: {e['msg']}")
    return "; ".join(problems)


def value_at(params: Params, key: str) -> Any:
    """The value at the dotted ``key`` of the parameters, as YAML would show it (lists, mappings, numbers)."""
    node: Any = params.model_dump(mode="json")
    for part in key.split("."):
        node = node[part]
    return node


def apply_setting(params: Params, setting: Mapping[str, Any]) -> Params:
    """``params`` with the setting's keys set, validated as a profile; ``ParamsError`` in one line naming the key.

    Example:
        >>> apply_setting(load_params("params/smoke.yaml"), {"noise.threshold": 0.8}).noise.threshold
        0.8
    """
    raw = params.model_dump(mode="json")
    for key, value in setting.items():
        _place(raw, key, value)
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        given = ", ".join(f"{k}={value_text(v)}" for k, v in setting.items())
        raise ParamsError(f"--set {given}: {_one_line(err)}") from None


def value_text(value: Any) -> str:
    """A value as one line of flow-style YAML (``[en, es]``, ``0.7``, ``null``)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "_".join(_slug(v) for v in value) or "none"
    if isinstance(value, dict):
        return "_".join(f"{k}-{_slug(v)}" for k, v in value.items()) or "none"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):  # kept whole: -1 must not read as 1
        return str(value).replace("+", "")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-") or "empty"


def setting_folder(setting: Mapping[str, Any]) -> str:
    """The run folder of a setting: ``key-value`` per key, joined by ``__`` (a valid run id).

    Example:
        >>> setting_folder({"negatives.negatives_per_positive": 3, "translation.sources": ["en", "es"]})
        'negatives.negatives_per_positive-3__translation.sources-en_es'
    """
    name = "__".join(f"{key}-{_slug(value)}" for key, value in setting.items())
    if len(name) > 200:  # a run id's limit: keep a readable start and tell long names apart by a digest
        name = f"{name[:187]}-{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return check_run_id(name, "setting folder")


@dataclass(frozen=True)
class Setting:
    """One run of a sweep: its folder, the swept keys' validated values and the full parameters."""

    folder: str
    values: dict[str, Any]
    params: Params


def plan_sweep(params: Params, sets: Sequence[tuple[str, Sequence[Any]]], *, mode: Mode = "grid") -> list[Setting]:
    """Every setting of the sweep, validated, in order; ``ParamsError`` / ``ValueError`` before anything runs.

    Values are compared as validated (``0.70`` and ``0.7`` are one value): a setting given twice is an error.
    Folders that would coincide (values differing only in characters a folder name drops) get ``-2``, ``-3``.
    """
    plan: list[Setting] = []
    seen: dict[str, dict[str, Any]] = {}
    for setting in combine(sets, mode=mode):
        full = apply_setting(params, setting)
        values = {key: value_at(full, key) for key in setting}
        canonical = json.dumps(values, sort_keys=True)
        if canonical in seen:
            given = ", ".join(f"{k}={value_text(v)}" for k, v in values.items())
            raise ValueError(f"--set: the setting {given} is given twice")
        seen[canonical] = values
        folder = setting_folder(values)
        taken = {s.folder for s in plan}
        if folder in taken:
            folder = next(f"{folder}-{n}" for n in itertools.count(2) if f"{folder}-{n}" not in taken)
        plan.append(Setting(folder, values, full.model_copy(update={"name": f"{params.name}-{folder}"})))
    return plan


# --- running settings (shared with qckit.ablation) -------------------------------------------------------
def experiment_root(params: Params, experiment_id: str | None, outputs_dir: str | Path | None, *, kind: str,
                    resume: bool = False) -> Path:
    """Create ``<outputs>/<id>/`` for an ablation or a sweep (id: ``<profile>-<kind>-<time>`` by default).

    A folder that already holds something is continued only with ``resume``: nothing in it is overwritten
    silently. ``RunError`` (one line) when the id is not a plain name or the folder cannot be made.
    """
    base = Path(outputs_dir or params.run.outputs_dir)
    root = base / (check_run_id(experiment_id, f"{kind} id") if experiment_id else new_run_id(params, kind))
    if root.is_dir() and any(root.iterdir()) and not resume:
        raise RunError(f"{root} already exists; pass --resume to continue it or choose a new --{kind}-id")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"cannot create the {kind} folder {root} (outputs folder {base}): "
                       f"{err.strerror or err}") from err
    return root


def run_settings(root: Path, settings: Mapping[str, Params], *, resume: bool = False, progress: bool = True,
                 **chain_kwargs: Any) -> dict[str, ChainResult]:
    """Run the chain once per ``folder -> params`` under ``root``, in order, each sharing the steps of the
    runs before it whose inputs hash the same; stops after a run with a failed step.

    Each setting's resolved profile is kept as ``<root>/params/<folder>.yaml``. ``chain_kwargs`` go to
    ``qckit.pipeline.run_chain`` (``steps``, ``notebooks_dir``, ``report``).
    """
    files = {}
    for folder, params in settings.items():
        files[folder] = write_text_atomic(root / "params" / f"{folder}.yaml", dump_params(params))
    results: dict[str, ChainResult] = {}
    for folder, path in files.items():
        done = [r.run.root for r in results.values()]
        result = run_chain(path, run_id=folder, outputs_dir=root, resume=resume, share_from=done,
                           progress=progress, **chain_kwargs)
        results[folder] = result
        if not result.ok:
            break
    return results


def train_rows(run: Run) -> int | None:
    """Rows step 05 trained on, summed over its models; None when the run has no step-05 metrics."""
    if not run.metrics_path(TRAINING).exists():
        return None
    return sum(m.get("train_rows", 0) for m in run.read_metrics(TRAINING).get("models", {}).values())


def task_rows(run: Run) -> list[dict[str, Any]]:
    """Step 06's figures of a run, one dict per task: ``task, f1, f1_low, f1_high`` (threshold fitted on all
    of dev), ``f1_held_out(_low, _high)`` (held-out thresholds), ``all_positive_f1, threshold, train_rows``;
    [] when step 06 has not run."""
    if not run.metrics_path(CALIBRATION).exists():
        return []
    rows, trained = [], train_rows(run)
    for task, m in run.read_metrics(CALIBRATION).get("tasks", {}).items():
        lo, hi = (m.get("f1_ci") or [None, None])[:2]
        cv_lo, cv_hi = (m.get("f1_held_out_threshold_ci") or [None, None])[:2]
        rows.append({"task": task, "f1": m.get("f1"), "f1_low": lo, "f1_high": hi,
                     "f1_held_out": m.get("f1_held_out_threshold"), "f1_held_out_low": cv_lo,
                     "f1_held_out_high": cv_hi, "all_positive_f1": m.get("all_positive_f1"),
                     "threshold": m.get("threshold"), "train_rows": trained})
    return rows


def step_record(run: Run) -> dict[str, dict[str, Any]]:
    """Per step of a run (its done-markers): ``shared`` (copied from another run) and the seconds it took
    here (0 when shared)."""
    out = {}
    for path in sorted(run.path(".done").glob("*.json")):
        marker = read_marker(run, path.stem) or {}
        shared = "shared_from" in marker
        out[path.stem] = {"shared": shared, "seconds": 0.0 if shared else float(marker.get("seconds", 0.0))}
    return out


# --- the table -------------------------------------------------------------------------------------------
def paired_f1_gain(labels: Sequence[int] | np.ndarray, pred_a: Sequence[int] | np.ndarray,
                   pred_b: Sequence[int] | np.ndarray, *, n: int = 1000, seed: int = 13, ci: float = 0.95
                   ) -> tuple[float, float, float]:
    """F1(b) - F1(a) on the same rows with a paired percentile bootstrap interval.

    Paired: each resample draws the same rows for both predictions, so what the two runs share (easy and
    hard rows) cancels out and the interval is that of the difference, far narrower than two separate
    intervals suggest. A resample only changes how many rows fall in each of the eight (label, a, b) cells,
    which follow a multinomial: drawing those counts is the row bootstrap at O(n) (as ``bootstrap_f1``).

    Returns:
        (gain on all rows, lower bound, upper bound); NaNs without rows.

    Example:
        >>> paired_f1_gain([1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0])[0]  # b is right where a is wrong
        0.5
    """
    y, a, b = (np.asarray(v, dtype=float) for v in (labels, pred_a, pred_b))
    if not (y.shape == a.shape == b.shape and y.ndim == 1):
        raise ValueError(f"labels and both predictions must be 1-d of one length, got {y.shape}, {a.shape}, {b.shape}")
    if not all(np.isin(v, (0.0, 1.0)).all() for v in (y, a, b)):
        raise ValueError("labels and predictions must be 0/1 (apply a threshold to the scores first)")
    if not len(y):
        return float("nan"), float("nan"), float("nan")
    cell = (y * 4 + a * 2 + b).astype(int)  # cell c holds label c//4, a's prediction (c//2)%2, b's c%2
    counts = np.bincount(cell, minlength=8).astype(float)
    draws = np.vstack([counts, np.random.default_rng(seed).multinomial(len(y), counts / len(y), size=n)])
    cells = np.arange(8)
    label, in_a, in_b = cells // 4, (cells // 2) % 2, cells % 2

    def f1(pred: np.ndarray) -> np.ndarray:
        tp = draws @ ((pred == 1) & (label == 1))
        return f1_from_counts(tp, draws @ (pred == 1) - tp, draws @ (label == 1) - tp)

    diffs = f1(in_b) - f1(in_a)
    lo, hi = np.quantile(diffs[1:], [(1 - ci) / 2, (1 + ci) / 2])
    return float(diffs[0]), float(lo), float(hi)


def held_out_predictions(run: Run) -> pd.DataFrame | None:
    """A run's labelled dev rows (``task, id, label, pred``) with ``pred`` at held-out thresholds, exactly as
    step 06 made them for ``f1_held_out`` (its folds and seed); None without predictions or step 06."""
    path = run.path("predictions", "dev.parquet")
    if not path.is_file() or not run.metrics_path(CALIBRATION).exists():
        return None
    settings = run.read_metrics(CALIBRATION).get("settings", {})
    data = labelled(pd.read_parquet(path))
    parts = []
    for task in pd.unique(data["task"]):
        part = data[data["task"].eq(task)]  # the rows and order step 06 folded
        pred = held_out_threshold_predictions(part, folds=settings.get("folds", 5), seed=settings.get("seed", 13))
        parts.append(part[["task", "id", "label"]].assign(pred=pred))
    return pd.concat(parts, ignore_index=True) if parts else None


def _gain(first: pd.DataFrame | None, other: pd.DataFrame | None, task: str, settings: Mapping[str, Any]
          ) -> dict[str, Any]:
    if first is None or other is None:
        return {}
    both = first[first["task"].eq(task)].merge(other[other["task"].eq(task)], on=["task", "id", "label"],
                                               suffixes=("_a", "_b"))
    gain, lo, hi = paired_f1_gain(both["label"], both["pred_a"], both["pred_b"], n=settings.get("n_bootstrap", 1000),
                                  seed=settings.get("seed", 13), ci=settings.get("ci", 0.95))
    return {"gain_vs_first": gain, "gain_low": lo, "gain_high": hi, "paired_rows": len(both)}


def sweep_table(root: Path, settings: Sequence[Setting]) -> pd.DataFrame:
    """One row per setting and task: ``setting``, the swept keys' values, then ``TABLE_COLUMNS``.

    The gain is against the first setting that has the task, on the dev rows both runs scored (``paired_rows``);
    a setting that did not reach step 06 has no row. Lists, mappings and null show as flow YAML (``[en, es]``).
    """
    keys = list(settings[0].values) if settings else []
    held = {s.folder: held_out_predictions(Run(root / s.folder)) for s in settings}
    first: dict[str, str] = {}
    rows = []
    for s in settings:
        run = Run(root / s.folder)
        options = run.read_metrics(CALIBRATION).get("settings", {}) if run.metrics_path(CALIBRATION).exists() else {}
        seconds = round(sum(r["seconds"] for r in step_record(run).values()), 1)
        shown = {k: value_text(v) if v is None or isinstance(v, (list, dict)) else v for k, v in s.values.items()}
        for row in task_rows(run):
            reference = first.setdefault(row["task"], s.folder)
            rows.append({"setting": s.folder, **shown, **row, "seconds": seconds,
                         **_gain(held[reference], held[s.folder], row["task"], options)})
    table = pd.DataFrame(rows, columns=["setting", *keys, *TABLE_COLUMNS])
    floats = [c for c in TABLE_COLUMNS if c not in ("task", "paired_rows", "train_rows")]
    return table.astype({c: "float64" for c in floats} | {c: "Int64" for c in ("paired_rows", "train_rows")})


def sweep_curves(root: Path, settings: Sequence[Setting]) -> pd.DataFrame:
    """Step 05's training curves of every setting in one tidy frame (``step, epoch, metric, value, model,
    setting``); empty when no head logged one."""
    frames = []
    for s in settings:
        run = Run(root / s.folder)
        if run.metrics_path(TRAINING).exists():
            frames.append(curve_frame(run.read_metrics(TRAINING)).assign(setting=s.folder))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else curve_frame({}).assign(setting=[])


# --- report helpers (shared with qckit.ablation) ---------------------------------------------------------
PAGE_STYLE = """body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 80rem; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .25rem .6rem; }
figure { margin: 1rem 0 1.5rem; } figure img { max-width: 100%; height: auto; }
figcaption, p.note { color: #555; font-size: .9rem; }"""


def figure_data_uri(fig, *, dpi: int = 110) -> str:
    """A figure as an inline ``data:image/png;base64,...`` URI (the reports' CSP allows only data: images);
    the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def format_table(table: pd.DataFrame, *, numbers: Iterable[str] = (), signed: Iterable[str] = (),
                 digits: int = 4) -> pd.DataFrame:
    """A copy for display: ``numbers`` to ``digits`` decimals, ``signed`` with their sign, missing as ``–``."""
    out = table.copy()
    for col in numbers:
        out[col] = out[col].map(lambda v: "–" if pd.isna(v) else f"{v:.{digits}f}")
    for col in signed:
        out[col] = out[col].map(lambda v: "–" if pd.isna(v) else f"{v:+.{digits}f}")
    return out


def experiment_page(title: str, body: str) -> str:
    """A standalone report page: the kit's Content-Security-Policy (no script, no fetch), ``title`` escaped,
    ``body`` as given (its caller escapes what it puts in)."""
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{html.escape(title)}</title>
<style>{PAGE_STYLE}</style>
</head><body>{body}</body></html>
"""


# --- the sweep -------------------------------------------------------------------------------------------
def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table as text for the terminal and the report: F1 and gains to 4 decimals (gains signed),
    seconds to 0.1, the swept values as they were validated (``0.0001``, not rounded), missing as ``–``."""
    fmt = format_table(table, numbers=("f1_held_out", "f1_held_out_low", "f1_held_out_high", "all_positive_f1",
                                       "gain_low", "gain_high"), signed=("gain_vs_first",))
    for key in table.columns[1:table.columns.get_loc("task")]:
        fmt[key] = table[key].map(str)
    fmt["seconds"] = table["seconds"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}")
    return fmt.astype({c: "object" for c in ("paired_rows", "train_rows")}).fillna("–")


def _steps_table(root: Path, settings: Sequence[Setting]) -> pd.DataFrame:
    cells = {}
    for s in settings:
        record = step_record(Run(root / s.folder))
        cells[s.folder] = {step: "shared" if r["shared"] else f"ran {r['seconds']:.1f} s" for step, r in record.items()}
    return pd.DataFrame(cells).T.fillna("–")


def write_sweep_report(root: Path, table: pd.DataFrame, settings: Sequence[Setting], *, mode: Mode = "grid") -> Path:
    """``<root>/report/index.html`` (table, a figure per swept key, training curves, steps, links) and the
    table as ``sweep.csv`` and ``sweep.json`` beside it; returns the index's path."""
    e = html.escape
    out = root / "report"
    keys = list(settings[0].values) if settings else []
    write_text_atomic(out / "sweep.csv", table.to_csv(index=False), mode=REPORT_FILE_MODE)
    records = json.loads(table.to_json(orient="records", force_ascii=False, double_precision=15))
    write_text_atomic(out / "sweep.json", json.dumps(records, indent=1, ensure_ascii=False) + "\n",
                      mode=REPORT_FILE_MODE)
    figures = "".join(
        f"<figure><img alt='dev F1 against {e(key)}' src='{figure_data_uri(sweep_plots.sweep_figure(table, key))}'>"
        f"<figcaption>Dev F1 at held-out thresholds against <code>{e(key)}</code>, bars: bootstrap 95% interval; "
        f"dashed: the all-positive F1 of the same rows.</figcaption></figure>" for key in keys)
    curves = sweep_curves(root, settings)
    curve_html = (f"<figure><img alt='training curves' src='{figure_data_uri(sweep_plots.curves_figure(curves))}'>"
                  "<figcaption>Step 05's logged training loss and dev F1, one line per setting.</figcaption></figure>"
                  if len(curves) else "<p class='note'>The step-05 head of these runs logged no training curve.</p>")
    links = "".join(f"<li><a href='../{e(s.folder)}/report/index.html'>{e(s.folder)}</a></li>" for s in settings)
    how = "every combination of the values" if mode == "grid" else "the values paired up in order"
    body = f"""<h1>Sweep <code>{e(root.name)}</code></h1>
<p>Swept: {", ".join(f"<code>{e(k)}</code>" for k in keys)} ({len(settings)} settings, {how}).
Dev F1 of the positive class at held-out thresholds (each query-grouped fold of dev judged at the threshold
fitted on the other folds) with its bootstrap 95% interval, beside the all-positive F1 of the same rows.
<code>gain_vs_first</code>: F1 minus the first setting's on the dev rows both scored, with a paired bootstrap 95%
interval (the same resampled rows for both): a gain whose interval excludes 0 is clear. <code>seconds</code>: what
the run's own steps took; a step shared from an earlier setting (same inputs) costs nothing.</p>
{display_table(table).to_html(index=False, escape=True, border=0)}
<p>The table: <a href="sweep.csv">sweep.csv</a>, <a href="sweep.json">sweep.json</a>.</p>
<h2>F1 per key</h2>{figures}
<h2>Training curves</h2>{curve_html}
<h2>Steps per setting</h2><p class="note">shared = copied from an earlier setting with identical inputs.</p>
{_steps_table(root, settings).to_html(escape=True, border=0)}
<h2>Runs</h2><ul>{links}</ul>"""
    return write_text_atomic(out / "index.html", experiment_page(f"qckit sweep {root.name}", body),
                             mode=REPORT_FILE_MODE)


@dataclass
class SweepResult:
    """What ``run_sweep`` did: the folder, the table, the report index and the error of a failed step."""

    root: Path
    table: pd.DataFrame
    report: Path
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def run_sweep(params_file: str | Path, sets: Sequence[tuple[str, Sequence[Any]]], *, mode: Mode = "grid",
              sweep_id: str | None = None, outputs_dir: str | Path | None = None, resume: bool = False,
              progress: bool = True, **chain_kwargs: Any) -> SweepResult:
    """Run the chain per setting (``plan_sweep``) under ``<outputs>/<sweep-id>/`` and write the report.

    Every setting is validated before anything is created. ``sets``: (key, values) pairs (``parse_set``);
    ``chain_kwargs`` go to ``run_chain``.
    """
    params = load_params(params_file)
    settings = plan_sweep(params, sets, mode=mode)
    root = experiment_root(params, sweep_id, outputs_dir, kind="sweep", resume=resume)
    results = run_settings(root, {s.folder: s.params for s in settings}, resume=resume, progress=progress,
                           **chain_kwargs)
    errors = [step.error or f"{folder}: step {step.step} failed" for folder, r in results.items()
              for step in r.steps if step.status == "failed"]
    table = sweep_table(root, settings)
    return SweepResult(root, table, write_sweep_report(root, table, settings, mode=mode), errors)
