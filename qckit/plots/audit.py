"""Figures of step 01 (data audit): coverage, class balance, text lengths, category paths.

Example:
    >>> from qckit.plots import audit as audit_plots
    >>> fig = audit_plots.coverage_heatmap(audit.coverage(splits), zero_shot=["de", "it"])
    >>> fig.savefig("coverage.png")
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from qckit import TASKS
from qckit.audit import SPLITS, language_order, text_lengths
from qckit.plots.style import (
    SPLIT_PALETTE,
    TASK_PALETTE,
    figure,
    mark_zero_shot,
    no_data,
    style,
    task_panels,
)


def coverage_heatmap(coverage: pd.DataFrame, *, zero_shot: Sequence[str] = ()) -> Figure:
    """Rows per language (y) and task / split (x), counts written in the cells.

    Args:
        coverage: the tidy table of ``qckit.audit.coverage`` (``language, task, split, rows``).
        zero_shot: languages to mark; their labels read "xx (zero-shot)" in red.
    """
    langs = language_order(coverage["language"].unique()) if len(coverage) else []
    with style():
        fig, (ax,) = figure(2.5 + 1.0 * max(coverage[["task", "split"]].drop_duplicates().shape[0], 1),
                             1.4 + 0.33 * max(len(langs), 1))
        title = "Rows per language, task and split"
        ax.set_title(title + (" (zero-shot languages in red)" if zero_shot else ""))
        if coverage.empty:
            no_data(ax, "no rows")
            return fig
        table = coverage.assign(column=coverage["task"] + " · " + coverage["split"])
        columns = [f"{t} · {s}" for t in TASKS for s in SPLITS]
        present = set(table["column"])
        columns = [c for c in columns if c in present] + sorted(present - set(columns))
        grid = (table.pivot_table(index="language", columns="column", values="rows", aggfunc="sum")
                .reindex(index=langs, columns=columns).fillna(0).astype(int))
        # colour by share of each column so a large column (QI train) does not wash out the others
        share = grid / grid.sum(axis=0).replace(0, 1)
        sns.heatmap(share, ax=ax, annot=grid, fmt=",", cmap="Blues", vmin=0, linewidths=0.5,
                    linecolor="white", annot_kws={"fontsize": 8},
                    cbar_kws={"label": "share of the column's rows"})
        ax.set_xlabel("task · split (cells: rows)")
        ax.set_ylabel("language")
        ax.tick_params(axis="both", rotation=0)
        mark_zero_shot(ax, list(grid.index), zero_shot)
    return fig


def class_balance_chart(balance: pd.DataFrame, *, zero_shot: Sequence[str] = ()) -> Figure:
    """Share of positive labels per language, one panel per task, one bar per split.

    Args:
        balance: the table of ``qckit.audit.class_balance`` (``split, task, language, positive_share``);
            groups without labels (an unlabelled test split) are left out.
        zero_shot: languages to mark in red on the language axis.
    """
    labelled = balance.dropna(subset=["positive_share"]) if len(balance) else balance
    tasks = [t for t in TASKS if t in set(labelled.get("task", []))] or ["(no labels)"]
    langs = language_order(labelled["language"].unique()) if len(labelled) else []

    def draw(ax, task: str, part: pd.DataFrame) -> None:
        has_split = "split" in part.columns
        splits = [s for s in SPLITS if has_split and s in set(part["split"])]
        order = [x for x in langs if x in set(part["language"])]
        hue = "split" if has_split else None
        sns.barplot(part, x="language", y="positive_share", hue=hue, order=order,
                    hue_order=splits or None, palette=SPLIT_PALETTE if has_split else None, ax=ax)
        if len(order) < 3:  # keep bars of a one-language panel from spanning the whole axes
            ax.set_xlim(-1.5, len(order) + 0.5)
        mark_zero_shot(ax, order, zero_shot, axis="x")
        ax.axhline(0.5, color="0.5", linewidth=0.8, linestyle="--")
        ax.set_ylim(0, 1)
        ax.set_xlabel("language")
        ax.set_ylabel("positive share")
        if ax.get_legend() is not None:
            ax.legend(title="split", fontsize=8, title_fontsize=8, loc="lower right")

    title = "Share of positive labels per language (by task and split)"
    return task_panels(tasks, title + ("; zero-shot languages in red" if zero_shot else ""),
                       labelled, draw, height=3.8, sharey=True)


def length_distributions(data: pd.DataFrame, *, unit: Literal["chars", "tokens"] = "chars") -> Figure:
    """Box plots of query and target length per language, one box per task (outliers hidden).

    Args:
        data: a pairs table (lengths are computed), or one that already has ``query_chars`` etc.
        unit: ``"chars"`` (comparable across scripts) or ``"tokens"`` (whitespace words; ja/ko/th
            queries often have none, so they look one token long).
    """
    if unit not in ("chars", "tokens"):
        raise ValueError(f"unit must be 'chars' or 'tokens', got {unit!r}")
    lengths = data if f"query_{unit}" in data.columns else text_lengths(data)
    langs = language_order(lengths["language"].unique()) if len(lengths) else []
    tasks = [t for t in TASKS if t in set(lengths.get("task", []))]
    word = "characters" if unit == "chars" else "whitespace tokens"
    with style():
        fig, axes = figure(2.0 + 0.6 * max(len(langs), 1) * 2, 3.8, ncols=2)
        fig.suptitle(f"Query and target length per language ({word})")
        names = ("Query", "Target (category path / item title)")
        for ax, field, name in zip(axes, ("query", "target"), names):
            ax.set_title(name)
            if lengths.empty:
                no_data(ax, "no rows")
                continue
            with warnings.catch_warnings():
                # seaborn 0.13 passes matplotlib's deprecated `vert`; the warning would land in every report
                warnings.filterwarnings("ignore", message="vert: bool")
                sns.boxplot(lengths, x="language", y=f"{field}_{unit}", hue="task", order=langs,
                            hue_order=tasks, palette=TASK_PALETTE, showfliers=False, ax=ax, linewidth=0.8)
            ax.set_xlabel("language")
            ax.set_ylabel(f"length ({word})")
            if ax.get_legend() is not None:
                ax.legend(title="task", fontsize=8, title_fontsize=8)
    return fig


def category_charts(stats: Mapping[str, pd.DataFrame], *, top: int = 12) -> Figure:
    """Category depth distribution (left) and the most frequent top-level categories (right).

    Args:
        stats: the dict of ``qckit.audit.category_stats`` (``depth`` and ``top_level`` tables).
        top: top-level categories shown; the rest are summed into one "other" bar.
    """
    depth, levels = stats["depth"], stats["top_level"]
    with style():
        fig, axes = figure(10, 4.5, ncols=2, width_ratios=[1, 2])
        fig.suptitle("QC category paths: depth and top-level category (share of QC rows)")
        axes[0].set_title("Depth (levels in the path)")
        axes[1].set_title(f"Top-level category (top {top}, rest as 'other')")
        if depth.empty:
            no_data(axes[0], "no QC rows")
            no_data(axes[1], "no QC rows")
            return fig
        sns.barplot(depth.assign(depth=depth["depth"].astype(str)), x="depth", y="share",
                    color=TASK_PALETTE["QC"], ax=axes[0])
        # row counts on the bars: a rare depth is a sliver otherwise
        axes[0].bar_label(axes[0].containers[0], labels=[f"{n:,}" for n in depth["rows"]], fontsize=8)
        axes[0].set_xlabel("depth")
        axes[0].set_ylabel("share of QC rows")
        shown = levels.head(top)[["top_level", "share"]]
        if len(levels) > top:
            rest = pd.DataFrame({"top_level": ["other"], "share": [levels["share"].iloc[top:].sum()]})
            shown = pd.concat([shown, rest], ignore_index=True)
        shown = shown.assign(top_level=shown["top_level"].replace("", "(empty)"))
        sns.barplot(shown, y="top_level", x="share", color=TASK_PALETTE["QC"], ax=axes[1])
        axes[1].set_xlabel("share of QC rows")
        axes[1].set_ylabel("")
        axes[1].tick_params(axis="y", labelsize=8)
    return fig
