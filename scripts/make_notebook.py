"""Write the committed step notebooks from their cell lists: clean nbformat v4, no outputs.

The cells below are the source of truth of each notebook; edit them here and regenerate, so a notebook
never carries outputs, execution counts or random cell ids into git.

Usage:
    python scripts/make_notebook.py                   # every notebook known here
    python scripts/make_notebook.py 01_data_audit     # one of them

Other scripts can reuse the writer:
    >>> from make_notebook import write_notebook
    >>> write_notebook("notebooks/09_x.ipynb", [("code", PARAMETERS, ["parameters"]), ("markdown", "# X")])
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]

# (cell_type, source, tags); tags may be left out
Cell = tuple[str, str] | tuple[str, str, Sequence[str]]

PARAMETERS = 'params_file = "../params/default.yaml"\nrun_dir = "../outputs/interactive"'


def build_notebook(cells: Sequence[Cell]) -> nbformat.NotebookNode:
    """A v4 notebook with the given cells, Python 3 kernelspec, no outputs and stable cell ids."""
    nb = nbformat.v4.new_notebook()
    for i, cell in enumerate(cells):
        cell_type, source, tags = (*cell, ())[:3]
        if cell_type == "code":
            node = nbformat.v4.new_code_cell(source.strip("\n"))
        elif cell_type == "markdown":
            node = nbformat.v4.new_markdown_cell(source.strip("\n"))
        else:
            raise ValueError(f"cell {i}: cell_type must be 'code' or 'markdown', got {cell_type!r}")
        node["id"] = f"cell-{i:02d}"  # deterministic, so regenerating gives the same bytes
        if tags:
            node.metadata["tags"] = list(tags)
        nb.cells.append(node)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3",
                                    "codemirror_mode": {"name": "ipython", "version": 3},
                                    "file_extension": ".py", "mimetype": "text/x-python"}
    nbformat.validate(nb)
    return nb


def write_notebook(path: str | Path, cells: Sequence[Cell]) -> Path:
    """Build the notebook and write it to ``path`` (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(build_notebook(cells), str(path))
    return path


def data_audit_cells() -> list[Cell]:
    return [
        ("code", PARAMETERS, ["parameters"]),
        ("code", """
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from qckit import audit, plots
from qckit.audit import run_audit
from qckit.config import load_params
from qckit.runs import Run

params = load_params(params_file)
run = Run(run_dir).ensure()
"""),
        ("markdown", """
# 01 · Data audit

This step reads the training, development and test data, brings them into one table format (one row
per query–category or query–item pair with its label), saves them for the later steps, and checks
them: which languages and tasks are covered, how balanced the labels are, whether rows repeat or
contradict each other, whether evaluation queries were already seen in training, and what the texts
look like.

*QC* is the query–category task (does this category path fit the search query?), *QI* the
query–item task (does this product title fit the query?). Every figure below is also stored in
`metrics/01_data_audit.json`, which the report's index page and the later steps read.
"""),
        ("markdown", """
## Loading

The loader reads the files named in the parameters (or makes the synthetic demo data), keeps the
tasks and languages asked for, and — when the parameters say so — drops rows with an empty query or
target, exact duplicate rows and conflicting pairs. The first table counts, per split, the rows read,
the rows each filter dropped (`languages`: training rows outside `data.train_languages`) and the rows
kept; the second lists this step's headline figures, as shown on the report's index page
(`duplicate_rows` counts duplicates the loader dropped too).
"""),
        ("code", """
splits, metrics = run_audit(params, run)
print("Rows per split:", ", ".join(f"{name} {len(df):,}" for name, df in splits.items()))
display(audit.loading_table(metrics["load_info"]))
pd.Series(metrics["headline"], name="value").to_frame()
"""),
        ("markdown", """
## Coverage: languages, tasks and splits

Each cell counts the pairs of one language (row) in one task and split (column); the colour shows
the language's share of that column. A **zero-shot language** appears in the development or test data
but has no training rows, so the model has to transfer what it learned from other languages; later
steps report those languages separately. They are marked in red. The list comes from the data unless
the parameters (`audit.zero_shot_languages`) name the languages.
"""),
        ("code", """
zero_shot = metrics["zero_shot_languages"]
source = "set in the parameters" if params.audit.zero_shot_languages is not None else "found in the data"
print(f"Zero-shot languages ({source}):", ", ".join(zero_shot) or "none")
for task, languages in metrics["zero_shot_languages_by_task"].items():
    print(f"  {task}: {', '.join(languages) or 'none'}")
audit.coverage(splits, layout="wide")
"""),
        ("code", """
fig = plots.coverage_heatmap(audit.coverage(splits), zero_shot=zero_shot)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Class balance

The share of pairs labelled *relevant* (1), per language, task and split. About two thirds of real
QC pairs are relevant, so a model that always answers "relevant" already scores well: later F1
figures are shown beside that baseline. A language whose share differs much from the others, or a
development split that differs from its training split, makes one global decision threshold a poor
fit. Unlabelled test rows are left out.
"""),
        ("code", """
balance = audit.class_balance(splits)
display(audit.class_balance(splits, layout="wide"))
fig = plots.class_balance_chart(balance, zero_shot=zero_shot)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Duplicates, conflicting labels and leakage

- **Duplicate rows** repeat an earlier row exactly (same task, language, query, target and label);
  they weigh twice in training and in scores. With `data.drop_duplicates` on, the loader has already
  removed them (see the loading table) and this count is zero.
- **Conflicting pairs** are the same query and target labelled both relevant and not relevant: one
  of the labels is wrong or the pair is ambiguous.
- **Leakage**: development or test queries that also occur in the training data (ignoring case and
  spacing) let a model score well from memory; *shared pairs* counts identical query–target pairs.

The tables show the counts per split and task, then the first few example rows of each kind.
"""),
        ("code", """
integrity = audit.duplicates_and_conflicts(splits)
n = params.audit.examples
integrity["counts"]
"""),
        ("code", """
print(f"Duplicate rows: {len(integrity['duplicates']):,} (the first {n} below)")
display(integrity["duplicates"].head(n))
print(f"Rows of conflicting pairs: {len(integrity['conflicts']):,} (the first {n} below)")
display(integrity["conflicts"].head(n))
"""),
        ("code", """
display(integrity["leakage"])
print(f"Evaluation rows with an already seen query: {len(integrity['leaked']):,} (the first {n} below)")
integrity["leaked"].head(n)
"""),
        ("markdown", """
## Text length

How long queries and targets are, per language. Lengths are in characters because Japanese, Korean
and Thai queries are often written without spaces, so word counts mislead for them
(`one_token_share` is the share of queries without a space). The table gives means and the 95th
percentile (95% of texts are shorter); the box plots show the middle half of each language's texts
as a box, its median as a line, and the usual range as whiskers. Very short queries carry little
information; very long targets may be cut at the model's input length.
"""),
        ("code", """
display(audit.length_stats(splits))
fig = plots.length_distributions(audit.stack_splits(splits))
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Category paths (QC)

A category path lists categories from the most general to the most specific, e.g.
*home & garden › kitchen › cookware*. **Depth** is the number of levels; the **top-level category** is
the first one. These show which parts of the catalogue the data covers: categories rare in training
are harder for the model. `rows` counts pairs, `paths` distinct category paths.
"""),
        ("code", """
categories = audit.category_stats(splits)
display(categories["depth"])
display(categories["top_level"].head(15))
fig = plots.category_charts(categories)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Empty queries and targets

Rows with an empty query or an empty category path / item title cannot be judged. With
`data.drop_empty` on, the loader has removed them already (the loading table says how many); this
table counts those still present.
"""),
        ("code", """
audit.empty_text(splits)
"""),
        ("markdown", """
## What this step wrote

- `data/train.parquet`, `data/dev.parquet`, `data/test.parquet`: the pairs tables every later step reads
  (the test table may have no rows);
- `metrics/01_data_audit.json`: the figures above.
"""),
    ]


NOTEBOOKS: dict[str, Callable[[], list[Cell]]] = {
    "01_data_audit": data_audit_cells,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"notebooks to write (default: all of {sorted(NOTEBOOKS)})")
    parser.add_argument("--out", type=Path, default=REPO / "notebooks", help="folder to write into")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NOTEBOOKS]
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; known: {sorted(NOTEBOOKS)}")
    for name in args.names or NOTEBOOKS:
        print(write_notebook(args.out / f"{name}.ipynb", NOTEBOOKS[name]()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
