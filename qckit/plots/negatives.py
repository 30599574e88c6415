"""Seaborn figures of step 03 (hard-negative mining): each function takes a table and returns a Figure.

Like ``qckit.plots``: nothing here opens a window or changes global styles, so the functions are safe
headless; in a notebook show a figure with ``display(fig)`` and then ``plt.close(fig)``.

Example:
    >>> table = run.read_table("train_negatives")
    >>> similarity_distributions(table).savefig("similarity.png")
    >>> balance_change_chart(negatives.class_balance_change(run.read_table("train"), table))
"""
from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from qckit import TASKS
from qckit.audit import language_order
from qckit.negatives import SKIP_REASONS, similarity_groups
from qckit.plots.style import figure, no_data, style, task_panels  # one figure style for every step

KIND_PALETTE = {"positive": "#55a868", "labelled negative": "#4c72b0", "mined negative": "#c44e52"}
PHASE_PALETTE = {"before": "#8c8c8c", "after": "#c44e52"}


def _tasks(table: pd.DataFrame) -> list[str]:
    present = set(table["task"]) if len(table) else set()
    return [t for t in TASKS if t in present] or ["(no rows)"]


def similarity_distributions(table: pd.DataFrame) -> Figure:
    """Cosine of query and target for positives, labelled negatives and mined negatives, one panel per task.

    Args:
        table: ``train_negatives`` (a pairs table with ``similarity`` and the mined rows), or any pairs
            table with a ``similarity`` column; rows without a similarity or a label are left out.
    """
    scored = table[table["similarity"].notna()] if "similarity" in table else table.iloc[:0]
    scored = scored.assign(kind=similarity_groups(scored)).dropna(subset=["kind"]) if len(scored) else scored

    def draw(ax, task: str, part: pd.DataFrame) -> None:
        kinds = [k for k in KIND_PALETTE if k in set(part["kind"])]
        sns.histplot(part, x="similarity", hue="kind", hue_order=kinds, palette=KIND_PALETTE,
                     stat="density", common_norm=False, element="step", fill=False, bins=40, ax=ax)
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("density (each kind sums to 1)")

    return task_panels(_tasks(scored), "Query–target cosine similarity: positives, labelled negatives, mined negatives",
                       scored, draw, empty="no scored rows")


def balance_change_chart(balance: pd.DataFrame) -> Figure:
    """Positive share per language before and after mining, one panel per task.

    Args:
        balance: the table of ``qckit.negatives.class_balance_change``.
    """

    def draw(ax, task: str, part: pd.DataFrame) -> None:
        shares = ["positive_share_before", "positive_share_after"]
        long = part.melt(id_vars=["language"], value_vars=shares, var_name="phase", value_name="positive share")
        long["phase"] = long["phase"].str.removeprefix("positive_share_")
        order = language_order(part["language"])
        sns.barplot(long, x="language", y="positive share", hue="phase", order=order,
                    hue_order=list(PHASE_PALETTE), palette=PHASE_PALETTE, ax=ax)
        if len(order) < 3:
            ax.set_xlim(-1.5, len(order) + 0.5)
        ax.axhline(0.5, color="0.5", linewidth=0.8, linestyle="--")
        ax.set_ylim(0, 1)
        if ax.get_legend() is not None:
            ax.legend(fontsize=8, loc="lower right")

    title = "Share of positive labels per language, before and after adding mined negatives"
    return task_panels(_tasks(balance), title, balance, draw, sharey=True)


def skip_reasons_chart(skipped: pd.DataFrame) -> Figure:
    """Candidates in the rank range that each guard skipped, per task (log scale).

    Args:
        skipped: ``MiningResult.skipped`` (``task, reason, candidates``).
    """
    with style():
        fig, (ax,) = figure(7.0, 3.0)
        ax.set_title("Candidates skipped by each guard (first reason that applied)")
        if skipped.empty or not skipped["candidates"].sum():
            no_data(ax, "nothing skipped")
            return fig
        sns.barplot(skipped, y="reason", x="candidates", hue="task", order=list(SKIP_REASONS),
                    hue_order=[t for t in TASKS if t in set(skipped["task"])], ax=ax)
        ax.set_xscale("symlog")
        ax.set_xlabel("candidates skipped")
        ax.set_ylabel("")
    return fig
