"""Stakeholder reports: every executed notebook as HTML without code, and an index page.

Reports leave the team, queries are user text, and a received run's notebooks may have been edited, so
the pages are built to be inert:
- every Markdown cell, raw cell and HTML or Markdown output of a code cell is cleaned with bleach against
  one allow-list of the markup reports need (headings, paragraphs, tables, lists, code, emphasis, links to
  http/https/mailto and in-page #anchors, inline images from data: URIs); anything else is stripped:
  `<meta>`, `<iframe>`, `<form>`, `<object>`, `<embed>`, event attributes such as `onerror=`,
  `javascript:` and relative links. nbconvert's own `sanitize_html` is not used: its allow-list has no
  headings, paragraphs or table heads, so it shows the tables of pandas as markup;
- Markdown cells are rendered here (their attachments inlined, no local file read) and reach the
  template as finished HTML; outputs keep only the types a static page shows (text, HTML, LaTeX,
  PNG/JPEG/SVG pictures), image sizes only as numbers;
- every `<script>` the template would load is removed;
- each page carries a Content-Security-Policy that forbids scripts and any network fetch, so a page
  opens offline and a `<script>` or `onerror=` that slipped through still cannot run;
- the index page is written here with every value passed through `html.escape`;
- report files are written world-readable (`REPORT_FILE_MODE`, 0644) to be shared, whatever the umask.

The index page is written for a stakeholder: first one verdict line per task in plain words (dev F1
against the F1 of calling every pair relevant; a model within `FLOOR_MARGIN` of that floor has learned
nothing usable), then the key pictures as inline PNGs (F1 per language with the zero-shot languages
marked, what the data steps did to the training table, the time per step), then the headline tables
and links to each step's page. `render_report(..., bundle=True)` also writes
`report/<run-id>-report.html`: the index and every step page in one file with an in-page table of
contents, to send or open offline.

Example:
    >>> from qckit.report import render_report
    >>> render_report("outputs/default-20261125-120000")
    PosixPath('outputs/default-20261125-120000/report/index.html')
    >>> render_report("outputs/default-20261125-120000", bundle=True)   # and the one-file report
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bleach
import pandas as pd

from qckit import TASKS
from qckit.analysis import metrics_by
from qckit.calibrate import thresholds_from_metrics
from qckit.plots import evaluation as evaluation_plots
from qckit.plots.style import figure, style
from qckit.runs import Run, write_text_atomic
from qckit.steps import AUDIT, CALIBRATION, NEGATIVES, NOISE, TRANSLATION

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)
_CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
# Scripts of the nbconvert template (require.js, MathJax from a CDN): not wanted offline. Only the
# template's own tags can match here; text from the data is escaped by the sanitiser before this runs.
_SCRIPT_RE = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_LINK_RE = re.compile(r"<link\b[^>]*href=\"https?://[^>]*>", re.IGNORECASE)
# Report files are meant to be read by others: 0644 whatever the umask (data and models keep the umask).
REPORT_FILE_MODE = 0o644


ALLOWED_TAGS = [
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "small", "span", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
]
ALLOWED_ATTRIBUTES = {
    "*": ["class", "id", "title"], "a": ["href"], "img": ["src", "alt", "width", "height"],
    "td": ["colspan", "rowspan"], "th": ["colspan", "rowspan"], "table": ["border"],
}
# Whole elements whose content is code or styling, removed with their content (bleach would keep
# the text of a stripped <style> block on the page). Outputs of pandas carry a <style scoped> block.
_DROP_BLOCKS_RE = re.compile(r"<(script|style|iframe|object|embed|template)\b[^>]*>.*?</\1\s*>",
                             re.IGNORECASE | re.DOTALL)


# How browsers and bleach read a URL: character references decoded, then controls, spaces and backticks
# ignored, case-insensitive.
_URL_IGNORED_RE = re.compile(r"[`\x00-\x20\x7f-\xa0\s]+")
LINK_SCHEMES = ("http", "https", "mailto")


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """bleach's attribute filter: the allow-list, with links to the web or the page, pictures inline."""
    if name not in ALLOWED_ATTRIBUTES["*"] and name not in ALLOWED_ATTRIBUTES.get(tag, ()):
        return False
    url = _URL_IGNORED_RE.sub("", html.unescape(value)).lower()
    if tag == "a" and name == "href":  # no relative links: on a file:// page they reach local files
        scheme, colon, _ = url.partition(":")
        return url.startswith("#") or (bool(colon) and scheme in LINK_SCHEMES)
    if tag == "img" and name == "src":
        return url.startswith("data:image/")
    return True


def clean_output_html(markup: str) -> str:
    """User-facing HTML reduced to the allow-list; scripts, handlers and foreign URLs removed."""
    markup = _DROP_BLOCKS_RE.sub("", markup)
    return bleach.clean(markup, tags=ALLOWED_TAGS, attributes=_allowed_attribute,
                        protocols=[*LINK_SCHEMES, "data"], strip=True, strip_comments=True)


# What a static report shows of an output; the rest (scripts, widgets, Mermaid source, which the
# template would insert unescaped) is dropped.
SHOWN_OUTPUT_TYPES = ("text/plain", "text/html", "text/latex", "image/png", "image/jpeg", "image/svg+xml")
_IMAGE_SIZE_KEYS = ("width", "height")


def _clean_outputs(cell) -> None:
    """Sanitise one code cell's outputs in place (Markdown outputs become sanitised HTML)."""
    import nbformat
    from nbconvert.filters import markdown2html

    kept = []
    for output in cell.get("outputs", []):
        if _is_script_output(output):
            continue
        if "data" in output:
            data = output.data
            if "text/markdown" in data:
                data["text/html"] = markdown2html(data.pop("text/markdown"))
            if "text/html" in data:
                data["text/html"] = clean_output_html(data["text/html"])
            for key in [k for k in data if k not in SHOWN_OUTPUT_TYPES]:
                del data[key]
            output.metadata = nbformat.from_dict(_image_metadata(output.get("metadata", {})))
        kept.append(output)
    cell.outputs = kept


def _image_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Output metadata as the template may use it: picture sizes only as numbers (it writes them unquoted),
    no `filenames` (they would point pictures at local files)."""
    def clean(meta: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in meta.items()
                if "/" not in k and k != "filenames" and (k not in _IMAGE_SIZE_KEYS or _is_number(v))}

    kept = clean(metadata)
    for mime in ("image/png", "image/jpeg"):
        if isinstance(metadata.get(mime), dict):
            kept[mime] = clean(metadata[mime])
    return kept


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def notebook_to_html(notebook: str | Path) -> str:
    """An executed notebook as a self-contained, script-free HTML page without code cells."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
        # Markdown cells arrive as cleaned HTML (below); embed_images off: a picture path in a received
        # notebook's Markdown would otherwise copy a local file into the report
        embed_images=False, filters={"markdown2html": _as_html},
    )
    nb = nbformat.read(str(notebook), as_version=4)
    nb.metadata.pop("widgets", None)  # widget state: script data, nothing a static report shows
    cells = []
    for cell in nb.cells:  # papermill's injected-parameters cell is code: hidden with the rest
        if cell.cell_type == "code":
            _clean_outputs(cell)
        elif cell.cell_type == "markdown":
            # nbconvert's own rendering (heading anchors, attachments as data: URIs), then the allow-list
            cell.source = clean_output_html(exporter.markdown2html({"cell": cell}, cell.source))
            cell.pop("attachments", None)
        elif cell.cell_type == "raw":
            cell.source = clean_output_html(cell.source)
        else:
            continue  # unknown cell types: the template would print their type unescaped
        cells.append(cell)
    nb.cells = cells
    body, _ = exporter.from_notebook_node(nb)
    return _harden(body)


def _as_html(markup: str) -> str:
    """The template's `markdown2html` filter: Markdown cells are rendered and cleaned before export."""
    return markup


def _is_script_output(output: Any) -> bool:
    data = output.get("data", {}) if isinstance(output, dict) else {}
    return any(k in data for k in ("application/javascript", "text/javascript"))


def _harden(page: str) -> str:
    page = _SCRIPT_RE.sub("", page)
    page = _LINK_RE.sub("", page)
    return re.sub(r"<head([^>]*)>", lambda m: f"<head{m.group(1)}>\n{_CSP_META}", page, count=1)


def render_report(run_dir: str | Path, *, bundle: bool = False) -> Path:
    """Render every executed notebook of a run and write `report/index.html`; returns its path.

    ``bundle``: also write `report/<run-id>-report.html` (:func:`bundle_path`), the index and every step
    page in one self-contained file.
    """
    run = Run(run_dir)
    if not run.root.is_dir():
        raise FileNotFoundError(f"{run.root}: no such run directory")
    report_dir = run.path("report")
    report_dir.mkdir(parents=True, exist_ok=True)
    pages, rendered = [], []
    for nb in sorted(run.path("notebooks").glob("*.ipynb")):
        out = report_dir / f"{nb.stem}.html"
        page = notebook_to_html(nb)
        write_text_atomic(out, page, mode=REPORT_FILE_MODE)
        pages.append((nb.stem, out.name))
        rendered.append((nb.stem, page))
    pictures = index_pictures(run)
    index = report_dir / "index.html"
    write_text_atomic(index, render_index(run, pages, pictures=pictures), mode=REPORT_FILE_MODE)
    if bundle:
        write_text_atomic(bundle_path(run.root), render_bundle(run, rendered, pictures=pictures),
                          mode=REPORT_FILE_MODE)
    return index


def bundle_path(run_dir: str | Path) -> Path:
    """Where ``render_report(..., bundle=True)`` writes the one-file report: `report/<run-id>-report.html`."""
    run = Run(run_dir)
    return run.path("report", f"{run.id}-report.html")


def _status(run: Run) -> dict[str, Any]:
    path = run.path("run_status.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _metrics(run: Run, step: str) -> dict[str, Any] | None:
    path = run.metrics_path(step)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """A step's headline figures: its `headline` dict, else its top-level scalars."""
    if isinstance(metrics.get("headline"), dict):
        return metrics["headline"]
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) and not isinstance(v, bool)}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


# --- the verdict: is the model any good? ---------------------------------------------------------------

# A model whose F1 is within this of the all-positive F1 (or below it) has learned nothing usable.
FLOOR_MARGIN = 0.01


@dataclass(frozen=True)
class Verdict:
    """One verdict line: ``kind`` is "learned", "floor" (at or below the all-positive F1) or "missing"."""

    task: str | None
    kind: str
    text: str


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _percent(value: float) -> int:
    """``value`` in whole points, rounded half up: the points said agree with the two decimals shown."""
    return math.floor(value * 100 + 0.5)


def task_verdict(task: str, f1: float, all_positive_f1: float) -> Verdict:
    """The verdict line of one task from its dev F1 and the F1 of calling every pair relevant.

    Example:
        >>> task_verdict("QC", 0.853, 0.791).text
        'QC: F1 0.85 on dev, against 0.79 if every pair were called relevant: +6 points.'
    """
    shown, floor = _percent(f1), _percent(all_positive_f1)
    f1_s, floor_s = f"{shown / 100:.2f}", f"{floor / 100:.2f}"
    gain = f1 - all_positive_f1
    if gain >= FLOOR_MARGIN:
        points = shown - floor
        return Verdict(task, "learned", f"{task}: F1 {f1_s} on dev, against {floor_s} if every pair were called "
                                        f"relevant: +{points} point{'s' if points != 1 else ''}.")
    if gain > -FLOOR_MARGIN:
        return Verdict(task, "floor", f"{task}: F1 {f1_s} on dev, the same as calling every pair relevant "
                                      f"({floor_s}): the model learned nothing usable.")
    points = floor - shown
    return Verdict(task, "floor", f"{task}: F1 {f1_s} on dev, {points} point{'s' if points != 1 else ''} below "
                                  f"calling every pair relevant ({floor_s}): the model learned nothing usable.")


def verdict_lines(calibration: Mapping[str, Any] | None, status: Mapping[str, Any] | None = None
                  ) -> list[Verdict]:
    """One verdict per task from step 06's metrics (``metrics/06_calibration.json``).

    The F1 judged is ``f1_held_out_threshold`` (each query-grouped fold of dev at the threshold fitted on
    the others) where present, else ``f1`` (at the threshold fitted on all of dev); the floor is
    ``all_positive_f1``. ``status`` (``run_status.json``) names a failed step when the metrics are missing.

    Example:
        >>> [v.text for v in verdict_lines({"tasks": {"QC": {"f1": 0.77, "all_positive_f1": 0.772}}})]
        ['QC: F1 0.77 on dev, the same as calling every pair relevant (0.77): the model learned nothing usable.']
    """
    tasks = calibration.get("tasks") if isinstance(calibration, Mapping) else None
    if not isinstance(tasks, Mapping) or not tasks:
        steps = (status or {}).get("steps") or []
        failed = [s.get("step") for s in steps if isinstance(s, Mapping) and s.get("status") == "failed"]
        if failed:
            why = f"the run failed at step {failed[0]} before the model could be judged"
        elif steps and CALIBRATION not in {s.get("step") for s in steps if isinstance(s, Mapping)}:
            why = f"step {CALIBRATION} has not run, so there is no calibrated model to judge"
        elif calibration is None:
            why = f"the metrics of step {CALIBRATION} are missing (the run failed or stopped before it)"
        else:
            why = f"the metrics of step {CALIBRATION} hold no per-task figures"
        return [Verdict(None, "missing", f"No verdict: {why}.")]
    out = []
    for task in [t for t in TASKS if t in tasks] + sorted(set(tasks) - set(TASKS)):
        m = tasks[task] if isinstance(tasks[task], Mapping) else {}
        f1 = _number(m.get("f1_held_out_threshold"))
        f1 = f1 if f1 is not None else _number(m.get("f1"))
        floor = _number(m.get("all_positive_f1"))
        if f1 is None or floor is None:
            missing = "F1" if f1 is None else "all-positive F1"
            out.append(Verdict(task, "missing", f"{task}: no verdict: the calibration metrics hold no {missing} "
                                                f"for {task} (no labelled dev rows?)."))
        else:
            out.append(task_verdict(task, f1, floor))
    return out


def _verdict_basis(calibration: Mapping[str, Any] | None) -> str:
    tasks = calibration.get("tasks") if isinstance(calibration, Mapping) else None
    if not isinstance(tasks, Mapping) or not tasks:
        return ""
    held_out = all(_number((m or {}).get("f1_held_out_threshold")) is not None for m in tasks.values()
                   if isinstance(m, Mapping))
    how = ("each group of dev queries judged at the decision threshold chosen on the other groups, so no pair "
           "helps choose its own threshold" if held_out else
           "at the decision threshold chosen on dev itself (an optimistic figure: this run has no held-out one)")
    return (f"F1 of the relevant class on the dev split, {how}. \u201cCalling every pair relevant\u201d is what a "
            f"model that always says yes scores: a model must beat it by at least {_percent(FLOOR_MARGIN)} "
            f"point to be of any use.")


# --- the key pictures ------------------------------------------------------------------------------------

FIGURE_DPI = 100


@dataclass(frozen=True)
class Picture:
    """One inline picture of the index: ``src`` is a data:image/png URI."""

    id: str
    title: str
    caption: str
    src: str
    width: int
    height: int


def _picture(fig, id_: str, title: str, caption: str) -> Picture:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=FIGURE_DPI)
        width, height = (int(round(v * FIGURE_DPI)) for v in fig.get_size_inches())
    finally:
        plt.close(fig)
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return Picture(id_, title, caption, src, width, height)


def language_table(run: Run) -> tuple[pd.DataFrame, dict[str, list[str]] | list[str]] | None:
    """Dev F1 per task and language at the calibrated thresholds, and the zero-shot languages; None
    without dev predictions, calibrated thresholds or labelled dev rows."""
    calibration, preds_path = _metrics(run, CALIBRATION), run.path("predictions", "dev.parquet")
    if not calibration or not isinstance(calibration.get("thresholds"), Mapping) or not preds_path.is_file():
        return None
    preds = pd.read_parquet(preds_path)
    if not {"task", "language", "label", "score"} <= set(preds.columns):
        return None
    thresholds, language_thresholds = thresholds_from_metrics(calibration)
    preds = preds[preds["task"].isin(list(thresholds))]
    table = metrics_by(preds, ["task", "language"], thresholds=thresholds, language_thresholds=language_thresholds)
    if table.empty:
        return None
    audit = _metrics(run, AUDIT) or {}
    by_task = audit.get("zero_shot_languages_by_task")
    zero_shot = ({str(k): list(v) for k, v in by_task.items()} if isinstance(by_task, Mapping)
                 else list(audit.get("zero_shot_languages") or []))
    return table, zero_shot


def step_effects(run: Run) -> list[tuple[str, int, str]]:
    """What each data step that ran did to the training table, from the steps' metrics: (label, rows,
    kind) with kind "added", "removed" or "changed" (labels flipped or rows only flagged)."""
    out: list[tuple[str, int, str]] = []
    tr = _metrics(run, TRANSLATION)
    if tr and tr.get("enabled", True) is not False:
        rows = _number(_headline(tr).get("translated_rows"))
        if rows is not None:
            out.append(("02 translation: translated rows added", int(rows), "added"))
    neg = _metrics(run, NEGATIVES)
    if neg and neg.get("enabled", True) is not False:
        rows = _number(_headline(neg).get("mined_negatives"))
        if rows is not None:
            out.append(("03 hard negatives: mined negatives added", int(rows), "added"))
    noise = _metrics(run, NOISE)
    if noise and noise.get("enabled", True) is not False:
        flagged = _number(_headline(noise).get("flagged"))
        action = noise.get("action")
        before, after = _number(noise.get("rows")), _number(noise.get("rows_after"))
        if action == "remove" and before is not None and after is not None:
            out.append(("04 noise filtering: noisy rows removed", int(before - after), "removed"))
        elif action == "relabel_vote" and _number(noise.get("rows_relabelled")) is not None:
            out.append(("04 noise filtering: labels flipped by the detectors' vote", int(noise["rows_relabelled"]),
                        "changed"))
        elif flagged is not None:
            what = "labels flipped" if action == "relabel" else "rows flagged for review"
            out.append((f"04 noise filtering: {what}", int(flagged), "changed"))
    return out


def _effects_figure(effects: list[tuple[str, int, str]], start: int | None):
    colors = {"added": "#55a868", "removed": "#c44e52", "changed": "#8c8c8c"}
    with style():
        fig, (ax,) = figure(8, 0.9 + 0.55 * len(effects))
        labels = [label for label, _, _ in effects][::-1]
        values = [(-n if kind == "removed" else n) for _, n, kind in effects][::-1]
        bars = ax.barh(labels, values, color=[colors[kind] for _, _, kind in effects][::-1], height=0.6)
        for bar, value in zip(bars, values):
            ax.annotate(f"{value:+,}" if value else "0", (value, bar.get_y() + bar.get_height() / 2),
                        xytext=(4 if value >= 0 else -4, 0), textcoords="offset points", va="center",
                        ha="left" if value >= 0 else "right", fontsize=9)
        ax.axvline(0, color="0.3", lw=0.8)
        span = max([abs(v) for v in values] + [1])
        ax.set_xlim(-span * 1.25 if min(values) < 0 else 0, span * 1.25 if max(values) > 0 else span * 0.25)
        ax.set_xlabel("training rows")
        title = "What the data steps did to the training table"
        if start is not None:
            end = start + sum(n if kind == "added" else -n if kind == "removed" else 0 for _, n, kind in effects)
            title += f" ({start:,} rows \u2192 {end:,})"
        ax.set_title(title)
    return fig


def _times_figure(steps: list[Mapping[str, Any]]):
    colors = {"done": "#4c72b0", "failed": "#c44e52"}
    with style():
        fig, (ax,) = figure(8, 0.9 + 0.4 * len(steps))
        names = [str(s.get("step")) for s in steps][::-1]
        seconds = [_number(s.get("seconds")) or 0.0 for s in steps][::-1]
        states = [str(s.get("status")) for s in steps][::-1]
        bars = ax.barh(names, seconds, color=[colors.get(s, "#b0b0b0") for s in states], height=0.6)
        for bar, secs, state in zip(bars, seconds, states):
            note = _duration(secs) + ("" if state == "done" else f" ({state})")
            ax.annotate(note, (secs, bar.get_y() + bar.get_height() / 2), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=9)
        ax.set_xlim(0, max(seconds + [1.0]) * 1.3)
        ax.set_xlabel("seconds")
        ax.set_title(f"Time per step (total {_duration(sum(seconds))})")
    return fig


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def index_pictures(run: Run) -> tuple[list[Picture], list[str]]:
    """The index's key pictures, and a sentence for each one left out for want of data."""
    pictures, skipped = [], []
    lang = language_table(run)
    if lang is None:
        skipped.append("F1 per language (no dev predictions with labels and calibrated thresholds: "
                       "steps 05 and 06 have not both run)")
    else:
        table, zero_shot = lang
        pictures.append(_picture(
            evaluation_plots.f1_by_language(table, zero_shot=zero_shot), "picture-languages", "F1 per language",
            "Bars: dev F1 per language at the calibrated thresholds (chosen on all of dev, so a little kinder "
            "than the held-out F1 of the verdict); black ticks: the F1 of calling every pair of that language "
            "relevant. Hatched bars with red labels are zero-shot languages: none of their pairs were in the "
            "original training data."))
    effects = step_effects(run)
    if effects:
        rows = ((_metrics(run, AUDIT) or {}).get("rows") or {}).get("train")
        start = _number(rows.get("total")) if isinstance(rows, Mapping) else None
        pictures.append(_picture(
            _effects_figure(effects, None if start is None else int(start)), "picture-steps",
            "What the data steps did",
            "Rows each data step added to (green) or removed from (red) the training table; grey: rows "
            "changed in place."))
    else:
        skipped.append("the data steps' effects (no data step has written metrics)")
    steps = [s for s in _status(run).get("steps") or [] if isinstance(s, Mapping)]
    if steps:
        pictures.append(_picture(_times_figure(steps), "picture-times", "Time per step",
                                 "Wall-clock time of each step in the last run of the chain; red: failed, grey: "
                                 "skipped on resume (unchanged) or shared from another run."))
    else:
        skipped.append("step times (no run_status.json)")
    return pictures, skipped


# --- the pages -------------------------------------------------------------------------------------------

INDEX_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; padding: 0 1rem; }
.overview table { border-collapse: collapse; margin: .5rem 0 1rem; }
.overview td, .overview th { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
.overview .failed { color: #b00; font-weight: bold; } .overview .done { color: #070; }
.overview .skipped { color: #666; }
.overview pre { background: #f6f6f6; padding: 1rem; overflow-x: auto; }
.overview section.step { display: inline-block; vertical-align: top; margin-right: 2rem; }
.overview ul.verdicts { list-style: none; padding: 0; margin: 1rem 0 .5rem; }
.overview ul.verdicts li { font-size: 1.25rem; line-height: 1.4; margin: .4rem 0; padding: .5rem .9rem;
  border-left: .4rem solid #999; background: #f6f6f6; }
.overview ul.verdicts li.learned { border-color: #2e7d32; background: #eef6ee; }
.overview ul.verdicts li.floor { border-color: #c62828; background: #fbeeee; }
.overview ul.verdicts li.missing { border-color: #888; }
.overview p.note, .overview figcaption, .overview p.skipped-pictures { color: #555; font-size: .9rem; }
.overview figure { margin: 1rem 0 1.5rem; }
.overview figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def render_index(run: Run, pages: list[tuple[str, str]], *,
                 pictures: tuple[list[Picture], list[str]] | None = None) -> str:
    """The index page: verdicts, pictures, headline tables, links to ``pages`` ((name, href) pairs)."""
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{_CSP_META}
<title>qckit run {e(run.id)}</title>
<style>{INDEX_STYLE}</style></head>
<body>
<div class="overview" id="overview">
{_index_body(run, pages, index_pictures(run) if pictures is None else pictures)}
</div>
</body></html>
"""


def _index_body(run: Run, pages: list[tuple[str, str]], pictures: tuple[list[Picture], list[str]]) -> str:
    e = html.escape
    status = _status(run)
    calibration = _metrics(run, CALIBRATION)
    verdicts = "".join(f"<li class='{e(v.kind)}'>{e(v.text)}</li>" for v in verdict_lines(calibration, status))
    basis = _verdict_basis(calibration)
    shown, skipped = pictures
    figures_html = "".join(
        f"<figure id='{e(p.id)}'><img alt='{e(p.title)}' src='{e(p.src)}' width='{p.width}' height='{p.height}'>"
        f"<figcaption>{e(p.caption)}</figcaption></figure>" for p in shown)
    if skipped:
        figures_html += f"<p class='skipped-pictures'>Not shown: {e('; '.join(skipped))}.</p>"
    step_rows = "".join(
        f"<tr><td>{e(str(s.get('step')))}</td><td class='{e(str(s.get('status')))}'>{e(str(s.get('status')))}</td>"
        f"<td>{_number(s.get('seconds')) or 0:.1f} s</td><td>{e(str(s.get('peak_rss_mib') or '–'))}</td></tr>"
        for s in status.get("steps", []) if isinstance(s, Mapping)
    )
    tables = []
    for step, metrics in run.all_metrics().items():
        rows = "".join(
            f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in _headline(metrics).items()
        )
        tables.append(f"<section class='step'><h3>{e(step)}</h3><table class='figures'>{rows}</table></section>")
    links = "".join(f"<li><a href='{e(href)}'>{e(name)}</a></li>" for name, href in pages)
    params_path = run.path("params.yaml")
    params_text = params_path.read_text(encoding="utf-8") if params_path.exists() else ""
    ok = status.get("ok")
    state = "completed" if ok else ("failed" if ok is False else "unknown")
    return f"""<h1>qckit run <code>{e(run.id)}</code></h1>
<p>Status: <strong class="{e(state)}">{e(state)}</strong> · finished {e(str(status.get('finished', '–')))}</p>
<h2>Is the model any good?</h2>
<ul class="verdicts" id="verdicts">{verdicts}</ul>
{f'<p class="note">{e(basis)}</p>' if basis else ''}
<h2>Key pictures</h2>
<div id="pictures">{figures_html or '<p>No pictures: the run has no data for them yet.</p>'}</div>
<h2>Headline figures</h2>
<div id="figures">{''.join(tables) or '<p>No step has written metrics yet.</p>'}</div>
<h2>Reports</h2>
<ul id="reports">{links or '<li>No executed notebooks.</li>'}</ul>
<h2>Steps</h2>
<table id="steps"><tr><th>step</th><th>status</th><th>time</th><th>peak MiB</th></tr>{step_rows}</table>
<h2>Parameters</h2>
<pre id="params">{e(params_text)}</pre>"""


# --- the one-file report ---------------------------------------------------------------------------------

_STYLE_RE = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.IGNORECASE | re.DOTALL)
_BODY_RE = re.compile(r"<body\b[^>]*>(.*)</body\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[a-zA-Z][^<>]*>")
_ID_ATTR_RE = re.compile(r"(\sid=)([\"'])(.*?)\2")
_ANCHOR_RE = re.compile(r"(\shref=)([\"'])#(.*?)\2")

BUNDLE_STYLE = """
body.bundle { max-width: 75rem; }
nav#contents ol { columns: 2; }
section.step-page { border-top: 3px solid #4c72b0; margin-top: 3rem; padding-top: 1rem; }
section.step-page > h2.step-title { font-family: system-ui, sans-serif; margin: 0 0 .25rem; }
p.to-contents { font-family: system-ui, sans-serif; font-size: .85rem; margin: 0 0 1rem; }
"""


def step_anchor(name: str) -> str:
    """The in-page anchor of a step's section in the one-file report."""
    return "step-" + re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def _scope_ids(body: str, prefix: str) -> str:
    """Every ``id`` and in-page ``href="#..."`` of one page's tags prefixed, so pages put one after
    another keep their anchors apart (two notebooks may share a heading) and their links working."""
    def tag(m: re.Match) -> str:
        markup = _ID_ATTR_RE.sub(lambda a: f"{a.group(1)}{a.group(2)}{prefix}{a.group(3)}{a.group(2)}", m.group(0))
        return _ANCHOR_RE.sub(lambda a: f"{a.group(1)}{a.group(2)}#{prefix}{a.group(3)}{a.group(2)}", markup)

    return _TAG_RE.sub(tag, body)


def render_bundle(run: Run, pages: Sequence[tuple[str, str]], *,
                  pictures: tuple[list[Picture], list[str]] | None = None) -> str:
    """The index and every step page (``(name, page HTML)`` from :func:`notebook_to_html`) in one page:
    a table of contents of in-page anchors, the overview, then each step as a section. Styles of the
    step pages are included once; pictures stay data: URIs; no script, the same Content-Security-Policy."""
    e = html.escape
    styles: list[str] = []
    sections = []
    for name, page in pages:
        for block in _STYLE_RE.findall(page.split("</head>", 1)[0]):
            if block not in styles:
                styles.append(block)
        body = _BODY_RE.search(page)
        content = _scope_ids(body.group(1) if body else "", f"{step_anchor(name)}--")
        content = _LINK_RE.sub("", _SCRIPT_RE.sub("", content))
        sections.append(
            f"<section class='step-page jp-Notebook' data-jp-theme-light='true' id='{e(step_anchor(name))}'>"
            f"<h2 class='step-title'>{e(name)}</h2><p class='to-contents'><a href='#contents'>back to contents</a>"
            f"</p>\n{content}\n</section>")
    links = [(name, f"#{step_anchor(name)}") for name, _ in pages]
    overview = _index_body(run, links, index_pictures(run) if pictures is None else pictures)
    toc = "".join(f"<li><a href='{e(href)}'>{e(name)}</a></li>" for name, href in
                  [("Overview: verdict, pictures, headline figures", "#overview"), *links])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{_CSP_META}
<title>qckit report {e(run.id)}</title>
{''.join(styles)}
<style>{INDEX_STYLE}{BUNDLE_STYLE}</style></head>
<body class="bundle">
<nav id="contents" class="overview"><h2>Contents</h2><ol>{toc}</ol></nav>
<div class="overview" id="overview">
{overview}
</div>
{''.join(sections)}
</body></html>
"""

