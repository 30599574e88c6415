"""The figures' shared style: palettes, a local seaborn style, figure and panel helpers.

Every figure of the kit lives in ``qckit.plots.<step>``, takes a table first and returns a Figure.

Figures are made through pyplot, so a notebook's inline backend renders them, but nothing here opens
a window, calls ``plt.show()`` or changes global styles (the seaborn style is applied locally): the
functions are safe headless and in tests. In a notebook show a figure with ``display(fig)`` and then
``plt.close(fig)``, or the inline backend shows it a second time at the end of the cell; scripts should
close figures they are done with too.

Example:
    >>> from qckit.plots.style import figure, style
    >>> with style():
    ...     fig, axes = figure(6, 3, ncols=2)
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ZERO_SHOT_COLOR = "#c0392b"
SPLIT_PALETTE = {"train": "#4c72b0", "dev": "#dd8452", "test": "#55a868"}
TASK_PALETTE = {"QC": "#4c72b0", "QI": "#dd8452"}
MAX_SIZE = (10.0, 5.0)


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The kit's seaborn style, applied locally: the caller's rcParams are untouched afterwards."""
    # matplotlib and seaborn load on the first figure: `qckit` commands that draw none start without them
    import matplotlib
    import seaborn as sns

    with sns.axes_style("whitegrid"), matplotlib.rc_context({"font.size": 9, "axes.titlesize": 10,
                                                           "figure.titlesize": 11}):
        yield


def figure(width: float, height: float, ncols: int = 1, **kwargs):
    """A constrained-layout figure of at most ``MAX_SIZE`` inches with one row of ``ncols`` axes."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(min(width, MAX_SIZE[0]), min(height, MAX_SIZE[1])), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False, **kwargs)[0]
    return fig, axes


def no_data(ax, message: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def task_panels(tasks: Sequence[str], title: str, data: pd.DataFrame | Mapping[str, Any],
                draw: Callable[[Any, str, Any], None], *, width: float = 4.5, height: float = 3.6,
                empty: str = "no labelled rows", **subplot_kw) -> Figure:
    """A figure with one panel per task, the shape of most figures of the kit.

    ``data``: a table with a ``task`` column (each panel gets its task's rows) or a mapping task -> data.
    ``draw(ax, task, part)`` draws a panel whose part is not empty (a missing or empty part gets the
    ``empty`` message instead). ``subplot_kw`` goes to ``Figure.subplots`` (``sharey=True``...).
    """
    with style():
        fig, axes = figure(1.0 + width * len(tasks), height, ncols=len(tasks), **subplot_kw)
        fig.suptitle(title)
        for ax, task in zip(axes, tasks):
            ax.set_title(task)
            if isinstance(data, pd.DataFrame):
                part = data[data["task"].eq(task)] if len(data) else data
            else:
                part = data.get(task)
            if part is None or len(part) == 0:
                no_data(ax, empty)
                continue
            draw(ax, task, part)
    return fig


def mark_zero_shot(ax, languages: list[str], zero_shot: Sequence[str], axis: str = "y") -> None:
    """Mark zero-shot languages on the language axis in red and bold ("xx (zero-shot)" on the y axis)."""
    marked = set(zero_shot)
    if not marked:
        return
    set_ticks = ax.set_yticks if axis == "y" else ax.set_xticks
    ticks = ax.get_yticks() if axis == "y" else ax.get_xticks()
    # on the x axis the suffix would collide with the next label: colour alone marks it there
    suffix = " (zero-shot)" if axis == "y" else ""
    set_ticks(ticks, [f"{x}{suffix}" if x in marked else x for x in languages], rotation=0)
    labels = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    for label, lang in zip(labels, languages):
        if lang in marked:
            label.set_color(ZERO_SHOT_COLOR)
            label.set_fontweight("bold")
