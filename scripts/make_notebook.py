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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cells_model import MODEL_NOTEBOOKS, PARAMETERS, SETUP  # noqa: E402  (05-07 live in their own file)


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
        ("code", SETUP + """from qckit import audit, plots
from qckit.audit import run_audit
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


def translation_cells() -> list[Cell]:
    return [
        ("code", PARAMETERS, ["parameters"]),
        ("code", SETUP + """from qckit import translate_step
from qckit.plots_translate import coverage_chart
from qckit.translate_step import run_translation
"""),
        ("markdown", """
# 02 · Translation augmentation

Some languages appear in the development and test data but have no training rows (the *zero-shot*
languages found by the audit). This step machine-translates labelled training rows of a
high-resource language (Spanish, as in the paper) into those languages and keeps their labels, so
the model sees every language in training. Only the query is translated; the category path (QC) or
item title (QI) stays as it is. Relevant and not-relevant rows are both translated.

Each translation passes five filters, and a row dropped by one is counted under that filter:
**empty** output, output **identical** to the input (brand names, model numbers, words the
translator did not know), a **length ratio** to the source outside the bounds in the parameters,
output **not in the target language** (an offline language identifier), and **duplicates** of rows
that already exist. Translations are cached on disk, so a second run translates nothing.
"""),
        ("markdown", """
## Translating

`run_translation` picks the source rows (whole queries, up to `translation.rows_per_target` rows per
target language), translates them with the backend chosen for each language pair, filters them and
writes the tables. The headline figures below are those of the report's index page.
"""),
        ("code", """
candidates, metrics = run_translation(params, run)
print("Backend:", params.translation.backend, "| sources:", ", ".join(metrics["sources"]),
      "| targets:", ", ".join(metrics["targets"]) or "none")
pd.Series(metrics["headline"], name="value").to_frame()
"""),
        ("markdown", """
## Counts per language pair

For each pair the backend served: the rows asked for (`requested`), the distinct queries among them
(`texts`), how many queries were translated now and how many came from the cache, the rows kept
after the filters, and the speed in sentences per second (empty when everything came from the cache).
"""),
        ("code", """
translate_step.pair_table(metrics)
"""),
        ("markdown", """
## Pairs not covered

Pairs asked for that no translation could be made for, with the reason: usually the backend has no
model or language pair for them (Apertium here has es→it, en↔es, es↔pt and fr↔es, but nothing into
German, Polish or Arabic). Those languages stay zero-shot; choose another backend for them with
`translation.backends` (e.g. `es-de: hf-causal` with a translation model).
"""),
        ("code", """
uncovered = translate_step.uncovered_table(metrics)
print(f"{len(uncovered)} pair(s) not covered")
with pd.option_context("display.max_colwidth", None):
    display(uncovered)
"""),
        ("markdown", """
## Why translations were dropped

Rows dropped per pair and filter. Each row is counted under the first filter it failed, in the order
of the columns. Machine translation of short queries often leaves them unchanged (brands, product
codes), and the language filter catches outputs still written mostly in the source language.
"""),
        ("code", """
translate_step.drop_table(metrics)
"""),
        ("markdown", """
## Source and translation side by side

A random sample of source queries and their translations; `dropped_by` names the filter that removed
a translation (empty when it was kept).
"""),
        ("code", """
translate_step.side_by_side(candidates, params.translation.examples, seed=params.run.seed)
"""),
        ("markdown", """
## Language coverage before and after

Training rows per language and task: the original rows, and on top of them the translated rows this
step added. Zero-shot languages are marked in red; those without an orange bar are still without
training data.
"""),
        ("code", """
coverage = translate_step.coverage_before_after(metrics)
display(coverage.pivot_table(index="language", columns=["task", "origin"], values="rows", aggfunc="sum",
                             sort=False))
fig = coverage_chart(coverage, zero_shot=metrics["targets"])
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## What this step wrote

- `data/translated.parquet`: the kept translated rows (`origin = translated`, `source_id` = the row
  they came from), with `source_language`, `source_query`, `backend` and `route`;
- `data/translation_dropped.parquet`: the dropped ones, with `drop_reason`;
- `data/train_translated.parquet`: the training table plus the kept translations, for the later steps;
- `metrics/02_translation.json`: the figures above, the uncovered pairs and the throughput.
"""),
    ]


def negative_mining_cells() -> list[Cell]:
    return [
        ("code", PARAMETERS, ["parameters"]),
        ("code", SETUP + """from qckit import negatives, plots_negatives
from qckit.negatives import run_negative_mining
"""),
        ("markdown", """
# 03 · Hard-negative mining

Most labelled negatives are easy: a query for a torque wrench paired with a doll category. This step
adds *hard* negatives, categories or items that look close to the query but are wrong, so the model
learns the fine distinctions. For every query with a relevant (positive) row, an embedding model finds
the `negatives.top_k` nearest category paths (QC) or item titles (QI) among all targets of the
training data, and some of them are added as new rows labelled *not relevant* (0).

The danger: in e-commerce a close "negative" is often an unlabelled positive. Every candidate
therefore passes **guards** first; the first that applies is the reason it is skipped:

- `labelled_positive`: labelled relevant for the same query anywhere in training or development data
  (case and spacing ignored);
- `hierarchy` (QC): a parent or child category of one of the query's relevant paths;
- `labelled_negative`: already labelled not relevant for the query (it would only repeat a row);
- `above_cap`: more similar to the query than `negatives.max_similarity`;
- `within_margin`: nearly as similar as the query's least similar relevant target (closer than
  `negatives.relative_margin` of its similarity).
"""),
        ("markdown", """
## Mining

`run_negative_mining` embeds every distinct query and target once (embeddings are cached on disk),
searches the nearest targets, applies the guards, samples `negatives.negatives_per_positive` negatives
per relevant row and writes the tables. `negatives.target_positive_share` caps how many are added per
task and language so the positive share does not fall below it. The headline figures are those of the
report's index page.
"""),
        ("code", """
mined, metrics = run_negative_mining(params, run)
tables = negatives.step_tables(run)
if not metrics["enabled"]:
    print(metrics["note"])
else:
    index = ", ".join(f"{task} {kind}" for task, kind in metrics["index"].items())
    print(f"Embedder: {metrics['embedder']} | faiss index: {index} | input table: {metrics['source_table']}")
pd.Series(metrics["headline"], name="value", dtype=object).to_frame()
"""),
        ("markdown", """
Per task and language: queries mined for, how many of them got fewer negatives than asked (`short`:
the guards left too few candidates in the rank range), negatives found, those left out to keep the
class balance, and those added.
"""),
        ("code", """
pd.DataFrame(metrics.get("per_language", []))
"""),
        ("markdown", """
## What the guards skipped

Candidates within the rank range that each guard skipped. A large `labelled_positive` count is the
false-negative risk made visible: without the guard, those rows would have taught the model that a
relevant category is irrelevant. The **leak check** below recounts, apart from the guards, how many
mined negatives are labelled relevant for the same query in the training or development data; it must
be zero.
"""),
        ("code", """
skipped = negatives.skipped_table(metrics)
display(skipped.pivot_table(index="reason", columns="task", values="candidates", aggfunc="sum", sort=False)
        if len(skipped) else skipped)
print("Leak check:", metrics.get("leak_check", "step disabled"))
fig = plots_negatives.skip_reasons_chart(skipped)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Similarity of positives, labelled negatives and mined negatives

Cosine similarity of query and target for each kind of row. Labelled negatives are mostly easy, far
from their query; mined negatives come from the nearest targets. With `negatives.relative_margin` at 0
or above, each mined negative is less similar to its query than that query's least similar positive,
yet similarity levels differ from query to query, so across queries the mined curve can lie right of
the positives' (multilingual-e5-small crowds query–category similarities into about 0.75–0.9). Read
the examples below with the danger in mind: a close negative may be an unlabelled positive; raise
`negatives.relative_margin` or lower `negatives.max_similarity` to mine further from the positives.
"""),
        ("code", """
display(pd.DataFrame(metrics.get("similarity", {})))
fig = plots_negatives.similarity_distributions(tables["after"])
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Examples per language

A few mined negatives per task and language, beside a relevant target of the same query, with their
similarity and rank (1 = the nearest target).
"""),
        ("code", """
negatives.mined_examples(tables["mined"], tables["before"], per_language=params.negatives.examples,
                         seed=params.run.seed)
"""),
        ("markdown", """
## Class balance before and after

Labelled rows and the share of relevant ones per task and language, before and after adding the mined
negatives.
"""),
        ("code", """
balance = negatives.class_balance_change(tables["before"], tables["after"])
display(balance)
fig = plots_negatives.balance_change_chart(balance)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## What this step wrote

- `data/negatives.parquet`: the mined rows (`origin = mined_negative`, label 0, `source_id` = the
  query's first relevant row, `similarity`, `rank`), with ids above every existing id;
- `data/train_negatives.parquet`: the training table (with each row's `similarity`) plus the mined
  rows, which the later steps read;
- `metrics/03_negative_mining.json`: the figures above, the guard counts, the leak check and timings.

With `negatives.enabled: false` only the metrics are written and later steps read the previous table.
"""),
    ]


def noise_detection_cells() -> list[Cell]:
    return [
        ("code", PARAMETERS, ["parameters"]),
        ("code", SETUP + """import warnings

from qckit import noise, plots_noise
from qckit.noise import run_noise_detection
warnings.filterwarnings("ignore", message="IProgress not found")  # no widgets: tqdm falls back to text
"""),
        ("markdown", """
# 04 · Label-noise detection

Some training labels are wrong: a relevant category marked *not relevant*, or the reverse. A model
trained on them learns the mistakes. This step looks for such rows the way the paper's
*self-validation* did: train a model on the noisy data, and flag rows where its confident prediction
contradicts the label. Flagged rows are then removed (the paper), relabelled, or only queued for a
person to review.

Three choices decide what is flagged:

- **scores**: *self-validation* scores each row with a model that was trained on that very row, so it
  can memorise the wrong label it should catch; *cross-validation* splits the data into folds (all rows
  of a query in the same fold) and scores each fold with a model that never saw it;
- **detector**: `embedding_lr` is a logistic regression on frozen multilingual embeddings of the query
  and the target (seconds on a CPU); `finetuned` is the step-05 model trained on a row budget (slow, but
  a stronger model finds more noise);
- **flag rule**: *threshold* flags a row when the model gives the opposite of its label a probability of
  at least `noise.threshold`; *confident learning* (the `cleanlab` library) estimates how many labels of
  each class are wrong and flags that many, least likely first; *both* flags the rows both rules agree on.

Rows created by the earlier steps (translations, mined negatives) are scored but keep their labels;
a translation is flagged when the row it was translated from is.
"""),
        ("markdown", """
## Detection

`run_noise_detection` scores every labelled training row, flags, applies the action and writes the
tables. The table below holds this step's headline figures, as on the report's index page; where the
true flipped labels are known (the demo data lists them; or `noise.measure_rate` flips some in a copy),
`precision` is the share of flags that are truly wrong labels, `recall` the share of wrong labels
flagged, and `cleanlab_default_f1` the F1 of cleanlab's default rule on the same scores, the baseline.
"""),
        ("code", """
scores, metrics = run_noise_detection(params, run)
enabled = metrics["enabled"]
if not enabled:
    print("noise.enabled is false: nothing was scored; later steps read the previous training table.")
else:
    print(f"Detector: {metrics['detector']} ({metrics['embedder'] or params.models.classifier}) | scores: "
          f"{metrics['scores']} | rule: {metrics['rule']} (threshold {metrics['threshold']}) | "
          f"action: {metrics['action']} | input table: {metrics['input_table']}")
    print(f"Ground truth: {metrics['truth'] or 'none'}")
    print("Detector AUC against the (noisy) labels:", metrics["detector_auc"])
    for warning in metrics["warnings"]:
        print("Warning:", warning)
pd.Series(metrics["headline"], name="value", dtype=object).to_frame()
"""),
        ("markdown", """
## Every method side by side

Each flag rule applied to each kind of scores, against the known wrong labels, with the number of rows
it flags. `cleanlab_default` is cleanlab's `find_label_issues` with its default settings, the baseline;
the last row is what flagging as many rows at random would score (its precision is the noise rate). The
**detector AUC** above says how well the model separates the labels at all: near 0.5 it learned
nothing, and no rule can do better than random with it. In-sample (self-validation) scores look
confident, but the model has memorised many of the wrong labels, so fewer are found.
"""),
        ("code", """
methods = pd.DataFrame(metrics.get("methods", []))
if methods.empty:
    print("No ground truth: set noise.measure_rate to measure the methods on a copy with flipped labels.")
else:
    display(methods[["method", "flagged", "true_positives", "precision", "recall", "f1", "seconds"]].round(3))
chosen = f"{params.noise.scores} · {params.noise.rule}"
fig = plots_noise.method_comparison(methods, chosen=chosen)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Precision and recall by confidence

Flagging rows from the most confident disagreement down traces a curve: few flags are precise, more
flags find more wrong labels at a lower precision. One line per kind of scores; the markers are the
rules above. The dotted line is random flagging.
"""),
        ("code", """
fig = plots_noise.precision_recall_curves(metrics.get("pr_curves", {}), methods)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## How confidently the detector disagrees

The probability the detector gives the opposite of each row's label. Where the wrong labels are known
they are drawn apart: the further right they sit compared with the clean rows, the easier they are to
find. The dashed line is `noise.threshold`.
"""),
        ("code", """
fig = plots_noise.confidence_histogram(scores, threshold=params.noise.threshold)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Flag rates per language and task

The share of rows flagged in each language and task. A detector that flags one language far more than
the others (often a language with few rows, or one the embedding model knows less well) would strip
it from the training data; with `remove`, compare these rates before trusting the cleaned table.
"""),
        ("code", """
rates = pd.DataFrame(metrics.get("flag_rates", []))
if len(rates):
    display(rates.pivot_table(index="language", columns="task", values="rate").round(3))
    display(pd.DataFrame(metrics["flagged_by_origin"]).T)
fig = plots_noise.flag_rate_chart(rates)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Review queue

The flagged rows, the most confident disagreement first: the rows a person should look at first.
`p_yes` is the detector's probability that the pair is relevant, `confidence` its probability for the
opposite of the label. The whole queue is in `data/review_queue.parquet`.
"""),
        ("code", """
queue = run.read_table("review_queue") if run.has_table("review_queue") and enabled else pd.DataFrame()
queue.head(20)
"""),
        ("markdown", """
## What this step wrote

- `data/noise_scores.parquet`: every scored row with `p_yes`, `confidence`, each rule's flag and
  `flagged` (and `noisy` where the truth is known);
- `data/review_queue.parquet`: the flagged rows, ranked;
- `data/train_clean.parquet`: the training table after the action (`noise_flagged` and `noise_p_yes`
  added), which step 05 reads;
- `metrics/04_noise_detection.json`: the figures above, the method comparison, the curves and timings.

With `noise.enabled: false` only the metrics are written and later steps read the previous table.
"""),
    ]


NOTEBOOKS: dict[str, Callable[[], list[Cell]]] = {
    **MODEL_NOTEBOOKS,
    "01_data_audit": data_audit_cells,
    "02_translation": translation_cells,
    "03_negative_mining": negative_mining_cells,
    "04_noise_detection": noise_detection_cells,
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
