"""The paper's ablation from one command: the chain per variant, shared steps run once, one table.

A variant names the data steps it switches on: ``baseline`` (none), ``all`` (every one), or step names
joined by ``+`` in any order (``translation``, ``negatives``, ``noise``). Names are normalised, so
``negatives+translation`` and ``translation+negatives`` are one run, and ``translation+negatives+noise``
is ``all``. The default set is the paper's cumulative rows (arXiv 2510.21671, Qwen3-14B dev F1):

| variant | QC | QI |
|---|---|---|
| baseline | 0.8760 | 0.8662 |
| translation | 0.8834 | 0.8738 |
| translation+negatives | 0.8885 | – |
| translation+noise | – | 0.8799 |
| all | 0.8919 | 0.8839 |

The paper's figure stands only beside the row with exactly its combination of steps; single-step
variants (``negatives``, ``noise``) run by name and have none.

Each variant is a run under ``outputs/<ablation-id>/<folder>/`` (the name with ``+`` written ``-``). A step
whose inputs (parameters, notebook, data, earlier steps' outputs) hash the same as in a variant already run
is copied, not executed: the audit runs once, translation once for every variant that has it, and a variant
with a step off shares that step's skip-metrics with every other such variant. The runs go through
``qckit.sweep.run_settings`` (an ablation is a sweep of the data steps' ``enabled`` switches); an ablation
folder that already holds runs is continued only with ``resume``.

Example:
    >>> from qckit.ablation import parse_variants, run_ablation
    >>> parse_variants("baseline,negatives+translation,noise+negatives+translation")
    ['baseline', 'translation+negatives', 'all']
    >>> table, report = run_ablation("params/smoke.yaml", variants=["baseline", "all"])
"""
from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from qckit.config import Params, load_params
from qckit.plots import ablation as ablation_plots
from qckit.report import REPORT_FILE_MODE
from qckit.runs import Run, write_text_atomic
from qckit.sweep import experiment_page, experiment_root, figure_data_uri, format_table, run_settings, task_rows

DATA_STEPS = ("translation", "negatives", "noise")  # chain order: the order of a canonical name
DEFAULT_VARIANTS = ("baseline", "translation", "translation+negatives", "translation+noise", "all")
# Dev F1 reported in arXiv 2510.21671; its rows are cumulative, each adding a step to the row above it
# (QC: translation, then negatives, then noise; QI: translation, then noise, then negatives).
PAPER_DEV_F1: dict[str, dict[str, float]] = {
    "baseline": {"QC": 0.8760, "QI": 0.8662},
    "translation": {"QC": 0.8834, "QI": 0.8738},
    "translation+negatives": {"QC": 0.8885},
    "translation+noise": {"QI": 0.8799},
    "all": {"QC": 0.8919, "QI": 0.8839},
}
TABLE_COLUMNS = ["variant", "task", "f1", "f1_low", "f1_high", "f1_held_out", "f1_held_out_low", "f1_held_out_high",
                 "all_positive_f1", "threshold", "train_rows", "paper_dev_f1", "gain_vs_baseline", "previous",
                 "gain_vs_previous"]


def canonical_variant(name: str) -> str:
    """The one name of a variant: ``baseline``, ``all``, or its steps joined by ``+`` in chain order.

    Example:
        >>> canonical_variant("noise + translation")
        'translation+noise'
    """
    text = name.strip().lower()
    if text in ("baseline", "all"):
        return text
    parts = [part.strip() for part in text.split("+")]
    unknown = [part for part in parts if part not in DATA_STEPS]
    if unknown or len(set(parts)) != len(parts):
        what = f"unknown step {unknown[0]!r}" if unknown else "a step named twice"
        raise ValueError(f"invalid variant {name!r} ({what}): use baseline, all, or step names joined by '+' "
                         f"({', '.join(DATA_STEPS)}), e.g. translation+negatives")
    steps = [step for step in DATA_STEPS if step in parts]
    return "all" if len(steps) == len(DATA_STEPS) else "+".join(steps)


def parse_variants(spec: str | Iterable[str]) -> list[str]:
    """Canonical variant names from a comma-separated list (or a list), each once, in the order given."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    variants = list(dict.fromkeys(canonical_variant(n) for n in names if n.strip()))
    if not variants:
        raise ValueError("no variants given: name at least one, e.g. baseline,translation+negatives")
    return variants


def variant_steps(variant: str) -> dict[str, bool]:
    """Which data steps the variant switches on (any spelling; see ``canonical_variant``)."""
    name = canonical_variant(variant)
    on = set(DATA_STEPS) if name == "all" else set() if name == "baseline" else set(name.split("+"))
    return {step: step in on for step in DATA_STEPS}


def variant_folder(variant: str) -> str:
    """The run folder of a variant under the ablation folder (a run id has no ``+``)."""
    return canonical_variant(variant).replace("+", "-")


def variant_params(params: Params, variant: str) -> Params:
    """The profile with the data steps switched as the variant says (name suffixed)."""
    update = {section: getattr(params, section).model_copy(update={"enabled": on})
              for section, on in variant_steps(variant).items()}
    return params.model_copy(update={**update, "name": f"{params.name}-{variant_folder(variant)}"})


def run_ablation(
    params_file: str | Path, *, variants: Iterable[str] | None = None, ablation_id: str | None = None,
    outputs_dir: str | Path | None = None, resume: bool = False, progress: bool = True, **chain_kwargs: Any,
) -> tuple[pd.DataFrame, Path]:
    """Run the chain per variant and write the ablation report; returns (table, report path).

    ``variants``: names in any spelling (``canonical_variant``); None: ``DEFAULT_VARIANTS``, the paper's rows.
    """
    params = load_params(params_file)
    variants = parse_variants(DEFAULT_VARIANTS if variants is None else variants)  # checked before anything runs
    root = experiment_root(params, ablation_id, outputs_dir, kind="ablation", resume=resume)
    results = run_settings(root, {variant_folder(v): variant_params(params, v) for v in variants}, resume=resume,
                           progress=progress, **chain_kwargs)
    statuses = {v: {s.step: s.status for s in results[variant_folder(v)].steps}
                for v in variants if variant_folder(v) in results}
    table = ablation_table(root, variants)
    report = write_ablation_report(root, table, statuses)
    return table, report


def ablation_table(root: Path, variants: Iterable[str]) -> pd.DataFrame:
    """F1 per task and variant at the calibrated threshold, with its interval, the all-positive floor,
    the paper's dev figure (on the row with exactly the paper's combination only) and the gains.

    ``gain_vs_baseline`` and ``gain_vs_previous`` are differences of ``f1_held_out`` (held-out thresholds);
    ``previous`` is the row of the table this variant adds the fewest steps to (``previous_variant``).
    """
    variants = parse_variants(variants)
    rows = []
    for variant in variants:
        for row in task_rows(Run(root / variant_folder(variant))):
            rows.append({"variant": variant, **row, "paper_dev_f1": PAPER_DEV_F1.get(variant, {}).get(row["task"])})
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "previous" and not c.startswith("gain_")])
    in_table = table.groupby("task", sort=False)["variant"].agg(list)
    table["previous"] = [previous_variant(v, in_table[t], t) for v, t in zip(table["variant"], table["task"])]
    held_out = table.set_index(["variant", "task"])["f1_held_out"].astype("float64")

    def gain(against: pd.Series) -> list[float | None]:
        return [held_out[(v, t)] - held_out[(a, t)] if isinstance(a, str) and (a, t) in held_out.index else None
                for v, t, a in zip(table["variant"], table["task"], against)]

    table["gain_vs_baseline"] = gain(pd.Series("baseline", index=table.index))
    table["gain_vs_previous"] = gain(table["previous"])
    return table[TABLE_COLUMNS].astype({"gain_vs_baseline": "float64", "gain_vs_previous": "float64"})


def previous_variant(variant: str, variants: Iterable[str], task: str) -> str | None:
    """The variant among ``variants`` that ``variant`` adds the fewest steps to (None for the baseline, or
    when no other variant's steps are a subset of its own).

    Ties go to the paper's cumulative row for ``task`` (for ``all``: ``translation+negatives`` on QC,
    ``translation+noise`` on QI), then to the order given.
    """
    steps = {s for s, on in variant_steps(variant).items() if on}
    best: tuple[int, int, int] | None = None
    found = None
    for position, other in enumerate(parse_variants(variants)):
        other_steps = {s for s, on in variant_steps(other).items() if on}
        if other_steps < steps:
            key = (len(steps) - len(other_steps), task not in PAPER_DEV_F1.get(other, {}), position)
            if best is None or key < best:
                best, found = key, other
    return found


def write_ablation_report(root: Path, table: pd.DataFrame, statuses: dict[str, dict[str, str]]) -> Path:
    """`<root>/index.html`: the table, the figure, which steps each variant shared, links to each run."""
    img = figure_data_uri(ablation_plots.ablation_figure(table))
    e = html.escape
    fmt = format_table(table, numbers=("f1", "f1_low", "f1_high", "f1_held_out", "f1_held_out_low", "f1_held_out_high",
                                       "all_positive_f1", "threshold", "paper_dev_f1"),
                       signed=("gain_vs_baseline", "gain_vs_previous"))
    fmt["previous"] = fmt["previous"].fillna("–")
    steps = pd.DataFrame(statuses).T.fillna("–")
    links = "".join(f"<li><a href='{e(variant_folder(v))}/report/index.html'>{e(v)}</a></li>" for v in statuses)
    body = f"""<h1>Ablation <code>{e(root.name)}</code></h1>
<p>Dev F1 of the positive class at the threshold calibrated on dev (step 06), with its bootstrap 95%
interval and the all-positive F1 of the same rows; <code>f1_held_out</code> judges each query-grouped fold of
dev at the threshold fitted on the other folds (no row helps choose its own threshold). Gains are differences
of <code>f1_held_out</code>: against the baseline, and against <code>previous</code>, the row run here that this
variant extends by the fewest steps. The paper's dev figures (arXiv 2510.21671, Qwen3-14B) stand beside the
rows with exactly the paper's combination of steps: its rows are cumulative (QC: +translation, +negatives,
+noise; QI: +translation, +noise, +negatives), so a single-step variant has none.</p>
{fmt.to_html(index=False, escape=True, border=0)}
<img alt="ablation figure" src="{img}">
<h2>Steps per variant</h2><p>shared = copied from an earlier variant with identical inputs.</p>
{steps.to_html(escape=True, border=0)}
<h2>Runs</h2><ul>{links}</ul>"""
    return write_text_atomic(root / "index.html", experiment_page(f"qckit ablation {root.name}", body),
                             mode=REPORT_FILE_MODE)
