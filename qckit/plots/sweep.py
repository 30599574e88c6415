"""Figures of ``qckit sweep``: dev F1 against each swept key, and the settings' training curves overlaid.

Example:
    >>> from qckit.plots.sweep import curves_figure, sweep_figure
    >>> sweep_figure(sweep_table(root, settings), "noise.threshold").savefig("threshold.png")
"""
from __future__ import annotations

from numbers import Real
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from qckit.plots.style import TASK_PALETTE, figure, no_data, style

LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _positions(values: pd.Series) -> tuple[pd.Series, list, bool]:
    """x of each row: the value itself when every value is a number, else its place in order of appearance."""
    order = list(dict.fromkeys(values))
    numeric = all(isinstance(v, Real) and not isinstance(v, bool) for v in order)
    return (values.astype(float) if numeric else values.map({v: i for i, v in enumerate(order)})), order, numeric


def sweep_figure(table: pd.DataFrame, key: str) -> Figure:
    """Dev F1 at held-out thresholds with its 95% interval against the values of ``key``, a line per task (and
    per setting of the other swept keys); the all-positive F1 of the same rows as a dashed line per task.

    ``table``: ``qckit.sweep.sweep_table`` (a column per swept key, then ``task, f1_held_out, ...``).
    """
    with style():
        fig, (ax,) = figure(7, 4)
        data = table.dropna(subset=["f1_held_out"]) if len(table) else table
        if not len(data):
            no_data(ax, "no setting reached step 06")
            ax.set(title=f"Dev F1 against {key}")
            return fig
        others = [c for c in table.columns[1:table.columns.get_loc("task")] if c != key]
        x, order, numeric = _positions(data[key])
        data = data.assign(_x=x)
        groups = list(data.groupby(others, sort=False, dropna=False)) if others else [((), data)]
        for g, (label, part) in enumerate(groups):
            label = label if isinstance(label, tuple) else (label,)
            extra = ", ".join(f"{k}={v}" for k, v in zip(others, label))
            for task, rows in part.groupby("task", sort=False):
                rows = rows.sort_values("_x")
                color = TASK_PALETTE.get(task, "0.3")
                err = [rows["f1_held_out"] - rows["f1_held_out_low"], rows["f1_held_out_high"] - rows["f1_held_out"]]
                ax.errorbar(rows["_x"], rows["f1_held_out"], yerr=err, color=color, capsize=3,
                            linestyle=LINESTYLES[g % len(LINESTYLES)], marker=MARKERS[g % len(MARKERS)],
                            label=f"{task} {extra}".strip())
        for task, rows in data.groupby("task", sort=False):
            floor = rows.groupby("_x")["all_positive_f1"].mean()
            ax.plot(floor.index, floor.to_numpy(), color=TASK_PALETTE.get(task, "0.3"), linestyle="--", linewidth=1,
                    alpha=.7, label=f"{task} all-positive")
        if numeric and min(order) > 0 and max(order) >= 10 * min(order):  # learning rates, counts over decades
            ax.set_xscale("log")
        ax.set_xticks(order if numeric else range(len(order)), [f"{v:g}" if numeric else str(v) for v in order])
        ax.minorticks_off()
        low = min(data["f1_held_out_low"].min(), data["all_positive_f1"].min())
        ax.set_ylim(max(0.0, float(low) - 0.05), 1.0)
        ax.legend(fontsize=8, loc="lower right")
        ax.set(title=f"Dev F1 against {key} (bars: 95% bootstrap interval)", xlabel=key,
               ylabel="F1 at held-out thresholds")
    return fig


def curves_figure(curves: pd.DataFrame) -> Figure:
    """Training loss (left) and dev F1 (right) per logged step, one line per setting.

    ``curves``: ``qckit.sweep.sweep_curves`` (step 05's tidy curves with a ``setting`` column). The dev F1 is
    the head's best-threshold F1 where it logs one, else its F1 at 0.5.
    """
    import seaborn as sns  # loaded here: `qckit sweep` imports this module at start

    with style():
        fig, axes = figure(10, 4, ncols=2)
        best = "dev F1 (best threshold)"
        f1_metric = best if curves["metric"].eq(best).any() else "dev F1 at 0.5"
        for ax, metric, title in ((axes[0], "train loss", "Training loss"), (axes[1], f1_metric, f1_metric)):
            part = curves[curves["metric"].eq(metric)]
            if len(part):
                many_models = part["model"].nunique() > 1
                sns.lineplot(data=part, x="step", y="value", hue="setting", style="model" if many_models else None,
                             marker="o", ax=ax)
                ax.legend(fontsize=7)
            else:
                no_data(ax, f"no {metric} logged")
            ax.set(title=title, xlabel="training step", ylabel=metric)
    return fig
