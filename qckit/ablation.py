"""The paper's ablation from one command: the chain per variant, shared steps run once, one table.

Variants switch the three data steps on or off:

| variant | translation | negatives | noise |
|---|---|---|---|
| baseline | off | off | off |
| translation | on | off | off |
| negatives | off | on | off |
| noise | off | off | on |
| all | on | on | on |

Each variant is a run under `outputs/<ablation-id>/<variant>/`. A step whose inputs (parameters,
notebook, data, earlier steps' outputs) hash the same as in a variant already run is copied, not
executed: the audit runs once, and a variant with translation off shares the translation step's
skip-metrics with every other such variant.

Example:
    >>> from qckit.ablation import run_ablation
    >>> table = run_ablation("params/smoke.yaml", variants=["baseline", "all"])
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from qckit.config import Params, dump_params, load_params
from qckit.pipeline import RunError, check_run_id, new_run_id, run_chain
from qckit.plots import ablation as ablation_plots
from qckit.report import CSP, REPORT_FILE_MODE
from qckit.runs import Run, write_text_atomic
from qckit.steps import CALIBRATION, TRAINING

VARIANTS: dict[str, dict[str, bool]] = {
    "baseline": {"translation": False, "negatives": False, "noise": False},
    "translation": {"translation": True, "negatives": False, "noise": False},
    "negatives": {"translation": False, "negatives": True, "noise": False},
    "noise": {"translation": False, "negatives": False, "noise": True},
    "all": {"translation": True, "negatives": True, "noise": True},
}
# Dev F1 reported in arXiv 2510.21671 (cumulative: each row adds its step to the row above).
PAPER_DEV_F1: dict[str, dict[str, float | None]] = {
    "baseline": {"QC": 0.8760, "QI": 0.8662},
    "translation": {"QC": 0.8834, "QI": 0.8738},
    "negatives": {"QC": 0.8885, "QI": None},
    "noise": {"QC": None, "QI": 0.8799},
    "all": {"QC": 0.8919, "QI": 0.8839},
}


def variant_params(params: Params, variant: str) -> Params:
    """The profile with the data steps switched as the variant says (name suffixed)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    update = {
        section: getattr(params, section).model_copy(update={"enabled": on})
        for section, on in VARIANTS[variant].items()
    }
    return params.model_copy(update={**update, "name": f"{params.name}-{variant}"})


def run_ablation(
    params_file: str | Path, *, variants: list[str] | None = None, ablation_id: str | None = None,
    outputs_dir: str | Path | None = None, resume: bool = False, progress: bool = True, **chain_kwargs: Any,
) -> tuple[pd.DataFrame, Path]:
    """Run the chain per variant and write the ablation report; returns (table, report path)."""
    params = load_params(params_file)
    variants = variants or list(VARIANTS)
    for v in variants:
        variant_params(params, v)  # validates the names before anything runs
    base = Path(outputs_dir or params.run.outputs_dir)
    root = base / (check_run_id(ablation_id, "ablation id") if ablation_id else new_run_id(params, "ablation"))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"cannot create the ablation folder {root} (outputs folder {base}): "
                       f"{err.strerror or err}") from err
    done: list[Path] = []
    statuses = {}
    for variant in variants:
        vfile = root / "params" / f"{variant}.yaml"
        vfile.parent.mkdir(exist_ok=True)
        write_text_atomic(vfile, dump_params(variant_params(params, variant)))
        result = run_chain(vfile, run_id=variant, outputs_dir=root, resume=resume, share_from=done,
                           progress=progress, **chain_kwargs)
        statuses[variant] = {s.step: s.status for s in result.steps}
        done.append(result.run.root)
        if not result.ok:
            break
    table = ablation_table(root, variants)
    report = write_ablation_report(root, table, statuses)
    return table, report


def ablation_table(root: Path, variants: list[str]) -> pd.DataFrame:
    """F1 per task and variant at the calibrated threshold, with its interval, the all-positive floor
    and the paper's dev figure."""
    rows = []
    for variant in variants:
        run = Run(root / variant)
        path = run.metrics_path(CALIBRATION)
        cal = run.read_metrics(CALIBRATION) if path.exists() else {"tasks": {}}
        train_rows = None
        if run.metrics_path(TRAINING).exists():
            ft = run.read_metrics(TRAINING)
            train_rows = sum(m.get("train_rows", 0) for m in ft.get("models", {}).values())
        for task, m in cal["tasks"].items():
            lo, hi = (m.get("f1_ci") or [None, None])[:2]
            cv_lo, cv_hi = (m.get("f1_held_out_threshold_ci") or [None, None])[:2]
            rows.append({
                "variant": variant, "task": task, "f1": m.get("f1"), "f1_low": lo, "f1_high": hi,
                "f1_held_out": m.get("f1_held_out_threshold"), "f1_held_out_low": cv_lo, "f1_held_out_high": cv_hi,
                "all_positive_f1": m.get("all_positive_f1"), "threshold": m.get("threshold"),
                "train_rows": train_rows, "paper_dev_f1": PAPER_DEV_F1.get(variant, {}).get(task),
            })
    return pd.DataFrame(rows, columns=["variant", "task", "f1", "f1_low", "f1_high", "f1_held_out",
                                       "f1_held_out_low", "f1_held_out_high", "all_positive_f1",
                                       "threshold", "train_rows", "paper_dev_f1"])


def write_ablation_report(root: Path, table: pd.DataFrame, statuses: dict[str, dict[str, str]]) -> Path:
    """`<root>/index.html`: the table, the figure, which steps each variant shared, links to each run."""
    import matplotlib.pyplot as plt


    fig = ablation_plots.ablation_figure(table)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    img = base64.b64encode(buf.getvalue()).decode()
    e = html.escape
    fmt = table.copy()
    for col in ("f1", "f1_low", "f1_high", "f1_held_out", "f1_held_out_low", "f1_held_out_high", "all_positive_f1",
                "threshold", "paper_dev_f1"):
        fmt[col] = fmt[col].map(lambda v: "–" if pd.isna(v) else f"{v:.4f}")
    steps = pd.DataFrame(statuses).T.fillna("–")
    links = "".join(f"<li><a href='{e(v)}/report/index.html'>{e(v)}</a></li>" for v in statuses)
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>qckit ablation {e(root.name)}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .25rem .6rem; }}</style>
</head><body><h1>Ablation <code>{e(root.name)}</code></h1>
<p>Dev F1 of the positive class at the threshold calibrated on dev (step 06), with its bootstrap 95%
interval and the all-positive F1 of the same rows; <code>f1_held_out</code> judges each query-grouped fold of
dev at the threshold fitted on the other folds (no row helps choose its own threshold). The paper's dev
figures (arXiv 2510.21671, cumulative additions on Qwen3-14B) are shown for reference.</p>
{fmt.to_html(index=False, escape=True, border=0)}
<img alt="ablation figure" src="data:image/png;base64,{img}">
<h2>Steps per variant</h2><p>shared = copied from an earlier variant with identical inputs.</p>
{steps.to_html(escape=True, border=0)}
<h2>Runs</h2><ul>{links}</ul></body></html>
"""
    return write_text_atomic(root / "index.html", page, mode=REPORT_FILE_MODE)
