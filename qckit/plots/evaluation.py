"""Seaborn figures of calibration (step 06) and error analysis (step 07); each returns a Figure.

Same rules as ``qckit.plots`` (whose style helpers these share): figures are made through pyplot but
nothing opens a window or changes global styles, so they are safe headless and in tests. Close a
figure when done with it (``plt.close(fig)``).

Example:
    >>> fig = f1_threshold_curve(sweep_by_task(dev), metrics["thresholds"], PAPER_THRESHOLDS)
    >>> fig = reliability_diagram(reliability_by_task(dev, metrics["temperature"]))
    >>> fig = f1_heatmap(metrics_by(dev, ["task", "language"], thresholds=thr), zero_shot=["de", "it"])
    >>> fig = f1_by_language(metrics_by(dev, ["task", "language"], thresholds=thr), zero_shot=["de", "it"])
    >>> fig = f1_with_typos(error_analysis.load(run).robustness, typo_rate=0.1)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from qckit import TASKS
from qckit.audit import language_order
from qckit.plots.style import TASK_PALETTE, ZERO_SHOT_COLOR, figure, mark_zero_shot, no_data, style, task_panels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STAGE_STYLE = {"before": {"color": "#c44e52", "marker": "o"}, "after": {"color": "#4c72b0", "marker": "s"}}


def _task_order(tasks) -> list[str]:
    present = set(tasks)
    return [t for t in TASKS if t in present] + sorted(present - set(TASKS))


def _f1_at(sweep: pd.DataFrame, threshold: float) -> float:
    """F1 of the sweep at ``threshold``: exact for an exact sweep (F1 is constant up to each score)."""
    i = int(np.searchsorted(sweep["threshold"].to_numpy(), threshold, side="left"))
    return float(sweep["f1"].iloc[i]) if i < len(sweep) else 0.0


def f1_threshold_curve(sweeps_by_task: Mapping[str, pd.DataFrame], chosen: Mapping[str, float],
                       paper: Mapping[str, float] | None = None, *,
                       all_positive: Mapping[str, float] | None = None) -> Figure:
    """F1 (with precision and recall) against the threshold, one panel per task.

    Args:
        sweeps_by_task: task -> ``qckit.calibrate.sweep_thresholds`` table
            (``qckit.calibrate.sweep_by_task``).
        chosen: task -> the fitted threshold (solid line).
        paper: task -> the paper's fixed threshold (dashed line), e.g. QC 0.4, QI 0.2.
        all_positive: task -> the all-positive F1, drawn as a dotted floor.
    """

    def draw(ax, task: str, sweep: pd.DataFrame) -> None:
        color = TASK_PALETTE.get(task, "#4c72b0")
        ax.plot(sweep["threshold"], sweep["precision"], color="0.65", lw=0.8, label="precision")
        ax.plot(sweep["threshold"], sweep["recall"], color="0.45", lw=0.8, ls=":", label="recall")
        ax.plot(sweep["threshold"], sweep["f1"], color=color, lw=1.8, label="F1")
        if task in chosen:
            t = chosen[task]
            ax.axvline(t, color=color, lw=1.2, label=f"chosen {t:.3f} (F1 {_f1_at(sweep, t):.3f})")
        if paper and task in paper:
            t = paper[task]
            ax.axvline(t, color="0.2", lw=1.0, ls="--", label=f"paper {t:g} (F1 {_f1_at(sweep, t):.3f})")
        if all_positive and task in all_positive:
            ax.axhline(all_positive[task], color="0.5", lw=0.8, ls="-.",
                       label=f"all-positive F1 {all_positive[task]:.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("threshold")
        ax.set_ylabel("score")
        ax.legend(fontsize=7, loc="lower left")

    return task_panels(_task_order(sweeps_by_task) or ["(no labels)"],
                       "F1 against the decision threshold (dev; positive when score >= threshold)",
                       sweeps_by_task, draw, height=3.8, sharey=True)


def reliability_diagram(table: pd.DataFrame, *, ece: Mapping[str, Mapping[str, float]] | None = None
                        ) -> Figure:
    """Observed positive rate against mean predicted probability, before and after temperature scaling.

    Args:
        table: ``qckit.calibrate.reliability_by_task`` (``task, stage, mean_predicted,
            fraction_positive, rows``); marker area follows the bin's rows.
        ece: task -> stage -> ECE, written in the legend (``metrics["tasks"][task]["ece_before"]`` ...);
            None computes it from ``table``.
    """

    def draw(ax, task: str, part: pd.DataFrame) -> None:
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", label="perfect calibration")
        for stage in [s for s in STAGE_STYLE if s in set(part["stage"])]:
            bins = part[part["stage"].eq(stage)]
            value = (ece or {}).get(task, {}).get(stage)
            if value is None:  # row-weighted mean gap, as expected_calibration_error
                value = float(np.average(bins["gap"].abs(), weights=bins["rows"]))
            style = STAGE_STYLE[stage]
            ax.plot(bins["mean_predicted"], bins["fraction_positive"], color=style["color"], lw=1.0)
            ax.scatter(bins["mean_predicted"], bins["fraction_positive"], color=style["color"],
                       marker=style["marker"], s=12 + 120 * bins["rows"] / bins["rows"].max(),
                       label=f"{stage} temperature scaling (ECE {value:.3f})", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed positive rate")
        ax.legend(fontsize=7, loc="upper left")

    return task_panels(_task_order(table["task"]) if len(table) else ["(no labels)"],
                       "Reliability: observed positive rate per probability bin (dev)",
                       table, draw, width=4.0, height=4.0, sharey=True)


def f1_heatmap(metrics_by_lang: pd.DataFrame, *, zero_shot: Sequence[str] = ()) -> Figure:
    """F1 per language (y) and task (x); cells read "F1 (all-positive F1)"; zero-shot languages in red.

    Args:
        metrics_by_lang: ``qckit.analysis.metrics_by(preds, ["task", "language"], ...)`` (``task,
            language, f1, all_positive_f1``), or the ``language`` table of ``qckit.analysis.slices``.
        zero_shot: languages to mark; their labels read "xx (zero-shot)" in red.
    """
    import seaborn as sns  # loaded here: `qckit report` (and so every `qckit` command) imports this module

    data = metrics_by_lang
    langs = language_order(data["language"].unique()) if len(data) else []
    tasks = _task_order(data["task"]) if len(data) else []
    with style():
        fig, (ax,) = figure(2.5 + 1.6 * max(len(tasks), 1), 1.4 + 0.33 * max(len(langs), 1))
        ax.set_title("F1 per language and task (cells: F1 (all-positive F1))")
        if data.empty:
            no_data(ax, "no labelled rows")
            return fig
        f1, floor = (data.pivot_table(index="language", columns="task", values=value)
                     .reindex(index=langs, columns=tasks) for value in ("f1", "all_positive_f1"))
        text = f1.map(lambda v: "" if pd.isna(v) else f"{v:.3f}") + floor.map(
            lambda v: "" if pd.isna(v) else f"\n({v:.3f})")
        sns.heatmap(f1, ax=ax, annot=text, fmt="", cmap="RdYlGn", vmin=0, vmax=1, linewidths=0.5,
                    linecolor="white", annot_kws={"fontsize": 8}, cbar_kws={"label": "F1"})
        ax.set_xlabel("task")
        ax.set_ylabel("language")
        ax.tick_params(axis="both", rotation=0)
        mark_zero_shot(ax, langs, zero_shot)
    return fig


def f1_by_language(metrics_by_lang: pd.DataFrame, *,
                   zero_shot: Sequence[str] | Mapping[str, Sequence[str]] = ()) -> Figure:
    """F1 per language as bars, one panel per task, each bar with its all-positive F1 as a black tick;
    zero-shot languages hatched, their labels red and bold: the index page's picture of the model.

    Args:
        metrics_by_lang: ``qckit.analysis.metrics_by(preds, ["task", "language"], ...)`` (``task,
            language, f1, all_positive_f1``).
        zero_shot: languages without training rows; or task -> such languages.

    Example:
        >>> f1_by_language(metrics_by(dev, ["task", "language"], thresholds=thr), zero_shot=["de", "it"])
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    marked_any: list[bool] = []

    def draw(ax, task: str, part: pd.DataFrame) -> None:
        part = part.set_index("language").reindex(language_order(part["language"].unique()))
        langs, x = list(part.index), np.arange(len(part))
        zs = set(zero_shot.get(task, ()) if isinstance(zero_shot, Mapping) else zero_shot) & set(langs)
        bars = ax.bar(x, part["f1"], width=0.7, color=TASK_PALETTE.get(task, "#4c72b0"), edgecolor="white")
        for bar, lang in zip(bars, langs):
            if lang in zs:
                bar.set_hatch("///")
                bar.set_edgecolor(ZERO_SHOT_COLOR)
        ax.scatter(x, part["all_positive_f1"], marker="_", s=260, linewidths=2.2, color="k", zorder=3)
        ax.set_xticks(x, langs)
        mark_zero_shot(ax, langs, sorted(zs), axis="x")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("language")
        ax.set_ylabel("F1 (dev)")
        marked_any.append(bool(zs))

    data = metrics_by_lang
    tasks = _task_order(data["task"]) if len(data) else ["(no labels)"]
    fig = task_panels(tasks, "F1 per language on dev, against calling every pair relevant", data, draw,
                      width=7.0 / max(len(tasks), 1), height=3.5, sharey=True)
    if marked_any:
        handles = [Patch(color="0.45", label="F1 at the calibrated threshold"),
                   Line2D([], [], color="k", lw=2.2, label="F1 if every pair were called relevant")]
        if any(marked_any):
            handles.append(Patch(facecolor="white", edgecolor=ZERO_SHOT_COLOR, hatch="///",
                                 label="zero-shot language (no training rows)"))
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig


def f1_with_typos(robustness: pd.DataFrame, *, typo_rate: float | None = None) -> Figure:
    """F1 per language with clean queries and with typo'd ones, paired bars, one panel per task; each pair
    with its all-positive F1 as a black tick and the change the typos made (typo'd minus clean F1) above it.

    Args:
        robustness: ``qckit.analysis.typo_robustness(...)`` by task and language (``task, language, f1_clean,
            f1_typo, typo_gap, all_positive_f1``): the ``robustness`` of ``error_analysis.load(run)``.
        typo_rate: the rate the typos were injected at, for the title.

    Example:
        >>> f1_with_typos(error_analysis.load(run).robustness, typo_rate=params.analysis.typo_rate)
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def draw(ax, task: str, part: pd.DataFrame) -> None:
        part = part.set_index("language").reindex(language_order(part["language"].unique()))
        x, color = np.arange(len(part)), TASK_PALETTE.get(task, "#4c72b0")
        ax.bar(x - 0.2, part["f1_clean"], width=0.4, color=color, edgecolor="white")
        ax.bar(x + 0.2, part["f1_typo"], width=0.4, color=color, alpha=0.45, hatch="..", edgecolor="white")
        ax.scatter(x, part["all_positive_f1"], marker="_", s=420, linewidths=2.0, color="k", zorder=3)
        for xi, (top, gap) in enumerate(zip(part[["f1_clean", "f1_typo"]].max(axis=1), part["typo_gap"])):
            change = 0.0 - gap  # 0.0 - 0.0 is +0.0: no "-0.00" labels
            ax.text(xi, min(top, 0.93) + 0.02, f"{change:+.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, list(part.index))
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("language")
        ax.set_ylabel("F1 (dev)")

    data = robustness
    tasks = _task_order(data["task"]) if len(data) else ["(no slice)"]
    rate = "" if typo_rate is None else f", typo rate {typo_rate:g} per letter"
    title = f"F1 per language on dev, clean and typo'd queries{rate}\n(numbers: typo'd minus clean F1)"
    fig = task_panels(tasks, title, data, draw,
                      width=7.0 / max(len(tasks), 1), height=3.5, sharey=True,
                      empty="no robustness slice (analysis.typo_rate 0, or no trained model)")
    if len(data):
        handles = [Patch(color="0.35", label="clean queries"),
                   Patch(facecolor="0.35", alpha=0.45, hatch="..", edgecolor="white", label="typo'd queries"),
                   Line2D([], [], color="k", lw=2.0, label="F1 if every pair were called relevant")]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig
