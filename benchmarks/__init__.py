"""Benchmarks: each ``benchmarks/<name>.py`` measures a figure against a named baseline in the same
process and writes ``benchmarks/results/<name>.json`` (see DESIGN.md, "Benchmarks").

Run one with ``python -m benchmarks.<name>``; ``make bench`` runs them all, then ``benchmarks.show``.
"""
