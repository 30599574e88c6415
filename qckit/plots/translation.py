"""Figures of step 02 (translation): training rows per language before and after translation.

Like every module of ``qckit.plots``: each function takes a table first and returns a Figure, changes no
global style and opens no window. In a notebook show it with ``display(fig)`` and then ``plt.close(fig)``.

Example:
    >>> fig = coverage_chart(coverage_before_after(metrics), zero_shot=["de", "it", "pl", "ar"])
    >>> fig.savefig("coverage.png")
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from qckit.audit import language_order
from qckit.plots.style import ZERO_SHOT_COLOR, figure, style

ORIGIN_COLORS = {"original": "#4c72b0", "translated": "#dd8452"}


def coverage_chart(coverage: pd.DataFrame, *, zero_shot: Sequence[str] = ()) -> Figure:
    """Stacked bars per language: original training rows and translated rows, one panel per task.

    Args:
        coverage: ``qckit.steps.translation.coverage_before_after`` (``task, language, origin, rows``).
        zero_shot: languages to mark; their labels are red.
    """
    tasks = list(dict.fromkeys(coverage["task"])) or ["(no rows)"]
    langs = language_order(coverage["language"].unique())
    with style():
        fig, axes = figure(1.2 + 0.45 * max(len(langs), 1) * len(tasks), 3.6, ncols=len(tasks), sharey=True)
        fig.suptitle("Training rows per language, before and after translation")
        for ax, task in zip(axes, tasks):
            part = coverage[coverage["task"] == task]
            grid = (part.pivot_table(index="language", columns="origin", values="rows", aggfunc="sum")
                    .reindex(index=langs, columns=list(ORIGIN_COLORS)).fillna(0))
            bottom = pd.Series(0.0, index=grid.index)
            for origin, color in ORIGIN_COLORS.items():
                ax.bar(grid.index, grid[origin], bottom=bottom, color=color, label=origin)
                bottom += grid[origin]
            ax.set_title(task)
            ax.set_xlabel("language")
            ax.tick_params(axis="x", labelrotation=0)
            for label in ax.get_xticklabels():
                if label.get_text() in set(zero_shot):
                    label.set_color(ZERO_SHOT_COLOR)
                    label.set_fontweight("bold")
        axes[0].set_ylabel("training rows")
        axes[-1].legend(title="rows", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig
