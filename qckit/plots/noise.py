"""Seaborn figures of label-noise detection (step 04); each returns a Figure.

Same rules as ``qckit.plots`` (whose style helpers these share): nothing opens a window or changes
global styles, so they are safe headless and in tests. Close a figure when done (``plt.close(fig)``).

Example:
    >>> metrics = run.read_metrics("04_noise_detection")
    >>> fig = method_comparison(pd.DataFrame(metrics["methods"]))
    >>> fig = precision_recall_curves(metrics["pr_curves"], pd.DataFrame(metrics["methods"]))
    >>> fig = flag_rate_chart(pd.DataFrame(metrics["flag_rates"]))
    >>> fig = review_precision(noise_step.load(run).review_precision)
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from qckit.audit import language_order
from qckit.plots.style import TASK_PALETTE, figure, no_data, style

METRIC_PALETTE = {"precision": "#4c72b0", "recall": "#dd8452", "f1": "#55a868"}
RULE_MARKERS = {"threshold": "o", "confident_learning": "s", "both": "D", "cleanlab_default": "X"}
SCORE_COLORS = {"cross_validation": "#4c72b0", "self_validation": "#c44e52"}


def method_comparison(methods: pd.DataFrame, *, chosen: str | None = None) -> Figure:
    """Precision, recall and F1 of every method (score kind · rule), side by side, best F1 first.

    Args:
        methods: ``metrics["methods"]`` as a table (``method, precision, recall, f1, flagged``).
        chosen: the method of the run's parameters; its name is written in bold.
    """
    with style():
        fig, (ax,) = figure(9, 0.45 * max(4, len(methods)) + 1.2)
        if methods.empty:
            no_data(ax, "no ground truth: nothing to compare")
            return fig
        order = methods.sort_values("f1", ascending=False)["method"].tolist()
        tidy = methods.melt(id_vars=["method"], value_vars=["precision", "recall", "f1"], var_name="figure")
        sns.barplot(data=tidy, y="method", x="value", hue="figure", order=order, palette=METRIC_PALETTE, ax=ax)
        flagged = methods.set_index("method")["flagged"]
        ax.set_yticks(range(len(order)), [f"{m}  ({flagged[m]:,} flags)" for m in order])
        for label in ax.get_yticklabels():
            if chosen and label.get_text().startswith(chosen + "  "):
                label.set_fontweight("bold")
        ax.set(xlim=(0, 1), xlabel="precision / recall / F1 of the flags", ylabel="")
        ax.legend(loc="lower right", title=None)
        ax.set_title("Noise detection: each method against the known flipped labels")
    return fig


def precision_recall_curves(curves: Mapping[str, Mapping[str, list]], methods: pd.DataFrame | None = None
                            ) -> Figure:
    """Precision against recall when flagging rows by falling disagreement, one line per score kind;
    each flag rule's operating point marked on its score kind's line.

    Args:
        curves: ``metrics["pr_curves"]``: per score kind, lists ``precision`` and ``recall``.
        methods: ``metrics["methods"]`` as a table, for the points (``scores, rule, precision, recall``).
    """
    with style():
        fig, (ax,) = figure(7, 5)
        if not curves:
            no_data(ax, "no ground truth: no curve")
            return fig
        for kind, curve in curves.items():
            ax.plot(curve["recall"], curve["precision"], color=SCORE_COLORS.get(kind), label=kind.replace("_", " "))
        if methods is not None and not methods.empty:
            for _, row in methods[methods["rule"].isin(list(RULE_MARKERS))].iterrows():
                ax.scatter(row["recall"], row["precision"], marker=RULE_MARKERS[row["rule"]], s=50, zorder=3,
                           color=SCORE_COLORS.get(row["scores"], "0.3"), edgecolor="black", linewidth=0.6)
            for rule, marker in RULE_MARKERS.items():
                ax.scatter([], [], marker=marker, color="white", edgecolor="black", label=rule.replace("_", " "))
            rnd = methods[methods["rule"] == "random"]
            if len(rnd):
                ax.axhline(rnd["precision"].iloc[0], color="0.5", linestyle=":", label="random flagging")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall (share of flipped labels found)",
               ylabel="precision (share of flags that are flipped labels)")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title("Precision–recall of flagging by confidence")
    return fig


def flag_rate_chart(rates: pd.DataFrame) -> Figure:
    """Share of rows flagged per language, one bar per task: a detector that strips a language stands out.

    Args:
        rates: ``qckit.noise.flag_rates`` / ``metrics["flag_rates"]`` (``task, language, rows, flagged, rate``).
    """
    with style():
        fig, (ax,) = figure(8, 4)
        if rates.empty:
            no_data(ax, "no rows scored")
            return fig
        order = language_order(rates["language"])
        tasks = [t for t in TASK_PALETTE if t in set(rates["task"])] or sorted(set(rates["task"]))
        sns.barplot(data=rates, x="language", y="rate", hue="task", order=order, hue_order=tasks,
                    palette=TASK_PALETTE, ax=ax)
        overall = rates["flagged"].sum() / max(1, rates["rows"].sum())
        ax.axhline(overall, color="0.3", linestyle="--", linewidth=1, label=f"all rows ({overall:.1%})")
        ax.set(xlabel="language", ylabel="share of rows flagged")
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax.legend(title=None)
        ax.set_title("Flag rate per language and task")
    return fig


def confidence_histogram(scores: pd.DataFrame, *, threshold: float | None = None) -> Figure:
    """How confidently the detector disagrees with each label, split by known noise when present.

    Args:
        scores: ``data/noise_scores.parquet`` (``confidence``; ``noisy`` where ground truth exists).
        threshold: the threshold rule's cut, drawn as a line.
    """
    with style():
        fig, (ax,) = figure(8, 3.5)
        if scores.empty:
            no_data(ax, "no rows scored")
            return fig
        hue = "noisy" if "noisy" in scores else None
        data = scores.assign(noisy=scores["noisy"].map({True: "flipped label", False: "clean label"})) \
            if hue else scores
        order = ["clean label", "flipped label"] if hue else None
        sns.histplot(data=data, x="confidence", hue=hue, hue_order=order, bins=np.linspace(0, 1, 41),
                     stat="density", common_norm=False, element="step", ax=ax)
        if threshold is not None:
            ax.axvline(threshold, color="0.2", linestyle="--", linewidth=1)
        ax.set(xlabel="p(opposite of the label)", ylabel="density", xlim=(0, 1))
        ax.set_title("Disagreement of the detector with the labels")
    return fig


def review_precision(table: pd.DataFrame) -> Figure:
    """The precision of the flags per confidence level that a person's review measured: the share of
    reviewed rows whose label was wrong, with its 95% interval, and ``wrong / reviewed`` above each point.

    Args:
        table: ``qckit.noise.precision_by_level`` / ``NoiseResults.review_precision`` (``level, reviewed,
            wrong, precision, low, high``).
    """
    with style():
        fig, (ax,) = figure(6, 3.8)
        if table.empty or not (table["reviewed"] > 0).any():
            no_data(ax, "nothing reviewed yet")
            return fig
        x = np.arange(len(table))
        done = (table["reviewed"] > 0).to_numpy()
        p, low, high = (table[c].to_numpy(dtype=float)[done] for c in ("precision", "low", "high"))
        ax.errorbar(x[done], p, yerr=[p - low, high - p], fmt="o", color=METRIC_PALETTE["precision"], capsize=5,
                    label="precision, 95% interval")
        for xi, row in zip(x, table.itertuples()):
            text = f"{row.wrong} / {row.reviewed}" if row.reviewed else "not reviewed"
            ax.annotate(text, (xi, row.high if row.reviewed else 0.5), xytext=(0, 6), textcoords="offset points",
                        ha="center", fontsize=8)
        ax.set_xticks(x, [f"≥ {v:g}" for v in table["level"]])
        ax.set(xlim=(-0.5, len(table) - 0.5), ylim=(0, 1.1), xlabel="confidence of the flag",
               ylabel="share of reviewed flags\nwhose label is wrong")
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax.legend(loc="lower right")
        ax.set_title("Precision of the flags, by a person's review")
    return fig
