"""Figures of step 05 (fine-tuning): training loss and dev F1 curves.

Example:
    >>> from qckit.plots.training import training_curves
    >>> training_curves(training.load(run).curves).savefig("curves.png")
"""
from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from qckit.plots.style import figure, no_data, style


def training_curves(frame: pd.DataFrame) -> Figure:
    """Loss (left) and dev F1 (right) per logged step, one line per metric and model.

    ``frame``: the tidy ``step, epoch, metric, value, model`` table of ``qckit.steps.training.curve_frame``.
    """
    with style():
        fig, axes = figure(10, 3.8, ncols=2)
        for ax, kind, title, ylabel in ((axes[0], "loss", "Loss", "loss"),
                                        (axes[1], "F1", "Dev F1 (positive class)", "F1")):
            part = frame[frame["metric"].str.contains(kind)] if len(frame) else frame
            if len(part):
                sns.lineplot(data=part, x="step", y="value", hue="metric", style="model", ax=ax, marker="o")
            else:
                no_data(ax, f"no {kind} logged")
            ax.set(title=title, xlabel="training step", ylabel=ylabel)
    return fig
