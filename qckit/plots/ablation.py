"""Figure of ``qckit ablate``: dev F1 per variant and task.

Example:
    >>> from qckit.plots.ablation import ablation_figure
    >>> ablation_figure(ablation_table(root, variants)).savefig("ablation.png")
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from qckit.plots.style import figure, style


def ablation_figure(table: pd.DataFrame) -> Figure:
    """F1 per variant and task with bootstrap intervals, the all-positive floor dashed and the paper's dev
    figure, where the variant is one of the paper's rows, as a diamond."""
    import seaborn as sns  # loaded here: `qckit ablate` imports this module at start

    with style():
        fig, (ax,) = figure(max(8.0, 1.6 * table["variant"].nunique()), 4)
        paper_shown = False
        if len(table):
            sns.barplot(data=table, x="variant", y="f1", hue="task", ax=ax)
            for patch_group, (_, g) in zip(ax.containers, table.groupby("task", sort=False)):
                for patch, (_, row) in zip(patch_group, g.iterrows()):
                    x = patch.get_x() + patch.get_width() / 2
                    if pd.notna(row.f1_low):
                        ax.errorbar(x, row.f1, yerr=[[row.f1 - row.f1_low], [row.f1_high - row.f1]], color="k",
                                    capsize=3)
                    ax.hlines(row.all_positive_f1, patch.get_x(), patch.get_x() + patch.get_width(),
                              colors="k", linestyles="dashed", linewidth=1)
                    if pd.notna(row.get("paper_dev_f1")):
                        ax.plot(x, row.paper_dev_f1, marker="D", color="k", markersize=5, linestyle="none",
                                label=None if paper_shown else "paper (Qwen3-14B)")
                        paper_shown = True
            low = max(0.0, float(table[["f1_low", "all_positive_f1", "paper_dev_f1"]].min().min()) - 0.05)
            ax.set_ylim(low, 1.0)
            # cumulative names are long: one step per line
            ax.set_xticks(ax.get_xticks(), [t.get_text().replace("+", "+\n") for t in ax.get_xticklabels()])
            ax.legend(fontsize=8, loc="upper left", ncol=3)
        ax.set(title="Dev F1 per variant (bars: 95% bootstrap interval; dashes: all-positive F1; diamonds: the paper)",
               xlabel="variant", ylabel="F1 (positive class)")
    return fig
