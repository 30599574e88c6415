"""Cells of the model notebooks (05 fine-tuning, 06 calibration, 07 error analysis).

Kept beside make_notebook.py, which registers them; edit here and regenerate.
"""
from __future__ import annotations

PARAMETERS = 'params_file = "../params/default.yaml"\nrun_dir = "../outputs/interactive"'

SETUP = """
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from qckit.config import load_params
from qckit.runs import Run

params = load_params(params_file)
run = Run(run_dir).ensure()
"""


def fine_tuning_cells() -> list:
    return [
        ("code", PARAMETERS, ["parameters"]),
        ("code", SETUP + "from qckit.train_step import curve_frame, plot_curves, run_fine_tuning\n"),
        ("markdown", """
# 05 · Fine-tuning

The relevance model is fine-tuned on the newest training table (after translation, hard negatives and
noise filtering, where those steps ran) and scores the dev and test pairs. The `classifier` head reads
the (query, category or title) pair; the `yes_no` head reads an Alpaca prompt and scores
p(yes) = softmax over the logits of "yes" and "no"; the `embedding` head (the CPU profiles `cpu-trees`
and `cpu-tuned`) feeds boosted trees with the encoder's embeddings, the labels of the nearest training
queries, the word overlap and how each candidate compares with the query's others; its curves count
trees instead of training steps. With `fine_tune_encoder` (`cpu-tuned`) the encoder is first trained
on the pairs (sentence-transformers), else it stays frozen.
"""),
        ("code", """
metrics = run_fine_tuning(params, run)
pd.Series(metrics["headline"], name="value").to_frame()
"""),
        ("markdown", """
## Training curves

Training loss per logged step and dev F1 per evaluation. The dev F1 at the best threshold is an
optimistic monitor (the threshold is chosen on the same rows); step 06 chooses the threshold properly.
The all-positive F1 is the floor: predicting "relevant" everywhere scores it.
"""),
        ("code", """
frame = curve_frame(metrics)
if len(frame):
    fig = plot_curves(frame)
    display(fig)
    plt.close(fig)
"""),
        ("markdown", "## Time, throughput and memory"),
        ("code", """
pd.DataFrame({name: {k: v for k, v in m.items() if not isinstance(v, dict)}
              for name, m in metrics["models"].items()})
"""),
        ("markdown", "## Dev predictions (sample)"),
        ("code", """
preds = pd.read_parquet(run.path("predictions", "dev.parquet"))
preds.sample(min(len(preds), 10), random_state=0)[["task", "language", "query", "target", "label", "score"]]
"""),
    ]


def calibration_cells() -> list:
    return [
        ("code", PARAMETERS, ["parameters"]),
        ("code", SETUP + """from qckit import calibrate, plots_eval
from qckit.eval_steps import read_predictions, run_calibration
"""),
        ("markdown", """
# 06 · Calibration

Decision thresholds per task are chosen on dev to maximise F1 of the positive class (the paper used
0.4 for QC and 0.2 for QI; both are shown). Temperature scaling makes the probabilities honest, which
the expected calibration error (ECE) measures. Intervals are bootstrap 95% intervals.
"""),
        ("code", """
metrics = run_calibration(params, run)
pd.DataFrame({task: {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
              for task, m in metrics["tasks"].items()}).round(4)
"""),
        ("markdown", "## F1 against the threshold"),
        ("code", """
dev = read_predictions(run, "dev")
fig = plots_eval.f1_threshold_curve(
    calibrate.sweep_by_task(dev), metrics["thresholds"], params.calibration.paper_thresholds,
    all_positive={t: m["all_positive_f1"] for t, m in metrics["tasks"].items()})
display(fig)
plt.close(fig)
"""),
        ("markdown", "## Reliability before and after temperature scaling"),
        ("code", """
table = calibrate.reliability_by_task(dev, metrics["temperature"], n_bins=params.calibration.n_bins)
fig = plots_eval.reliability_diagram(table)
display(fig)
plt.close(fig)
"""),
        ("markdown", """
## Per-language thresholds (held-out check)

Only when enabled: thresholds per language, compared with the task threshold on query-grouped folds of
dev, so a threshold is never scored on the rows it was fitted on.
"""),
        ("code", """
cv = [r for m in metrics["tasks"].values() for r in (m.get("language_threshold_cv") or [])]
pd.DataFrame(cv) if cv else "per-language thresholds are off (calibration.per_language: false)"
"""),
    ]


def error_analysis_cells() -> list:
    return [
        ("code", PARAMETERS, ["parameters"]),
        ("code", SETUP + """from qckit import analysis, plots_eval
from qckit.calibrate import thresholds_from_metrics
from qckit.eval_steps import read_predictions, run_error_analysis
"""),
        ("markdown", """
# 07 · Error analysis

Precision, recall and F1 per task and language at the calibrated thresholds, with the zero-shot
languages (no training rows in the original data) marked, then slices and the most confident errors.
Every F1 is shown beside the all-positive F1 of the same rows.
"""),
        ("code", """
metrics = run_error_analysis(params, run)
thresholds, language_thresholds = thresholds_from_metrics(run.read_metrics("06_calibration"))
dev = read_predictions(run, "dev").dropna(subset=["label"])
zero_shot = run.read_metrics("01_data_audit").get("zero_shot_languages", [])
by_language = analysis.metrics_by(dev, ("task", "language"), thresholds=thresholds,
                                  language_thresholds=language_thresholds)
fig = plots_eval.f1_heatmap(by_language, zero_shot=zero_shot)
display(fig)
plt.close(fig)
by_language
"""),
        ("markdown", "## Slices: query length, category depth, top-level category, training support"),
        ("code", """
tables = analysis.slices(dev, thresholds=thresholds, language_thresholds=language_thresholds,
                         train=run.read_training_table(), zero_shot=zero_shot)
for name, table in tables.items():
    print(name)
    display(pd.DataFrame(table).head(25))
"""),
        ("markdown", "## Most confident errors per language"),
        ("code", """
analysis.confident_errors(dev, thresholds=thresholds, language_thresholds=language_thresholds,
                          k=params.analysis.examples)
"""),
    ]


MODEL_NOTEBOOKS = {
    "05_fine_tuning": fine_tuning_cells,
    "06_calibration": calibration_cells,
    "07_error_analysis": error_analysis_cells,
}
