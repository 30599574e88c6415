"""Every figure of the kit: one module per step, one style.

``style`` (palettes, the local seaborn style, figure and panel helpers) and one module of figures per
notebook: ``audit``, ``translation``, ``negatives``, ``noise``, ``training``, ``evaluation`` (calibration
and error analysis) and ``ablation``. Each function takes a table first and returns a matplotlib Figure;
nothing opens a window or changes global styles, so figures are safe headless and in tests. In a
notebook show one with ``display(fig)`` and ``plt.close(fig)``.

Example:
    >>> from qckit.plots import audit as audit_plots
    >>> audit_plots.coverage_heatmap(audit.coverage(splits), zero_shot=["de"]).savefig("coverage.png")
"""
