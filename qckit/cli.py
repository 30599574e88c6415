"""Command line: `qckit run | report | validate | compare | params | predict | ablate | sweep | review | models`.

Heavy libraries (torch, transformers, papermill) are imported inside the functions that use them, so
`qckit validate` starts without loading them.
Exit codes: 0 success, 1 the work failed (invalid data, a failed step), 2 bad usage or parameters.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qckit import embed, models
from qckit.ablation import DEFAULT_VARIANTS, parse_variants, run_ablation
from qckit.compare import CompareError, compare_runs
from qckit.config import ParamsError, dump_params, load_params
from qckit.data import DataError, validate_file
from qckit.heads import UnsafeArtefactError
from qckit.layout import OFFICIAL
from qckit.pipeline import RunError, check_run_id, run_chain
from qckit.report import bundle_path, render_report
from qckit.review import ReviewError, SheetError, export_review, import_review, parse_levels_option
from qckit.submission import SubmissionError, predict_files
from qckit.sweep import display_table, parse_set, run_sweep


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        result = run_chain(
            args.params, run_id=args.run_id, steps=args.steps, resume=args.resume,
            outputs_dir=args.outputs_dir, progress=not args.quiet,
            **({"notebooks_dir": args.notebooks_dir} if args.notebooks_dir else {}),
        )
    except (ParamsError, RunError) as err:
        print(f"qckit run: {err}", file=sys.stderr)
        return 2
    for step in result.steps:
        if step.status == "failed":
            print(f"\nqckit run: {step.error}", file=sys.stderr)
    print(f"run directory: {result.run.root}")
    if result.report_index:
        print(f"report: {result.report_index}")
    return 0 if result.ok else 1


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        index = render_report(args.run_dir, bundle=args.bundle)
    except FileNotFoundError as err:
        print(f"qckit report: {err}", file=sys.stderr)
        return 2
    print(index)
    if args.bundle:
        print(f"bundle: {bundle_path(args.run_dir)}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    layout, files = OFFICIAL, list(args.files)
    if args.params is not None:
        try:
            data = load_params(args.params).data
        except ParamsError as err:
            print(err, file=sys.stderr)
            return 2
        layout = data.layout()
        files = files or [Path(p) for p in (*data.train, *data.dev, *data.test)]
    if not files:
        print("qckit validate: no files (name them, or give a profile with data.source: files)", file=sys.stderr)
        return 2
    failed = 0
    for path in files:
        report = validate_file(path, layout=layout)
        print(report.format())
        failed += not report.ok
    if len(files) > 1:
        print(f"\n{len(files) - failed} of {len(files)} files valid")
    return 1 if failed else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    try:
        path = compare_runs(args.runs, args.output)
    except (CompareError, OSError) as err:
        print(f"qckit compare: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    try:
        params = load_params(args.params)
    except ParamsError as err:
        print(err, file=sys.stderr)
        return 2
    print(dump_params(params), end="")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    try:
        report: dict[str, dict] = {}
        written = predict_files(args.run, args.input, args.output, thresholds=args.thresholds, report=report,
                                backend=args.backend)
    except (SubmissionError, DataError, UnsafeArtefactError, FileNotFoundError, ImportError) as err:
        print(f"qckit predict: {err}", file=sys.stderr)
        return 2
    for task, r in sorted(report.items()):
        per_language = " (per language where step 06 fitted one)" if r["per_language_thresholds"] else ""
        print(f"{task}: {r['rows']:,} rows read, threshold {r['threshold']:.3f}{per_language}, "
              f"{r['share_relevant']:.1%} predicted relevant")
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    try:
        if args.ablation_id is not None:
            check_run_id(args.ablation_id, "ablation id")  # a folder name under outputs/, not a path
        table, report = run_ablation(
            args.params, variants=parse_variants(args.variants),
            ablation_id=args.ablation_id, outputs_dir=args.outputs_dir, resume=args.resume,
            progress=not args.quiet,
        )
    except (ParamsError, RunError, ValueError) as err:
        print(f"qckit ablate: {err}", file=sys.stderr)
        return 2
    print(table.to_string(index=False))
    print(f"report: {report}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    try:
        if args.sweep_id is not None:
            check_run_id(args.sweep_id, "sweep id")  # a folder name under outputs/, not a path
        sets = [parse_set(spec) for spec in args.set]
        result = run_sweep(args.params, sets, mode="zip" if args.zip else "grid", sweep_id=args.sweep_id,
                           outputs_dir=args.outputs_dir, resume=args.resume, progress=not args.quiet,
                           **({"notebooks_dir": args.notebooks_dir} if args.notebooks_dir else {}))
    except (ParamsError, RunError, ValueError) as err:
        print(f"qckit sweep: {err}", file=sys.stderr)
        return 2
    for error in result.errors:
        print(f"\nqckit sweep: {error}", file=sys.stderr)
    if len(result.table):
        print(display_table(result.table).to_string(index=False))
    else:
        print("no setting reached step 06 (calibration): no table")
    print(f"report: {result.report}")
    return 0 if result.ok else 1


def _cmd_review(args: argparse.Namespace) -> int:
    try:
        if args.action == "export":
            summary = export_review(args.run, args.output, levels=parse_levels_option(args.levels),
                                    per_level=args.per_level, seed=args.seed)
        else:
            metrics = import_review(args.run, args.sheet)
    except SheetError as err:
        print(f"qckit review: {err}", file=sys.stderr)
        return 1
    except (ReviewError, RunError) as err:
        print(f"qckit review: {err}", file=sys.stderr)
        return 2
    if args.action == "export":
        for r in summary.levels.itertuples():
            print(f"confidence >= {r.level:g}: {r.drawn} of {r.flagged:,} flagged rows drawn")
        print(f"{summary.rows} rows to review: {summary.path}")
        print(f"fill in the verdict column, then: qckit review import {args.run} {summary.path}")
        return 0
    print(f"{metrics['rows']} rows read: {metrics['wrong']} wrong, {metrics['correct']} right, "
          f"{metrics['unsure']} unsure, {metrics['not_reviewed']} not reviewed")
    for r in metrics["precision_by_level"]:
        figure = (f"precision {r['precision']:.2f} [{r['low']:.2f}, {r['high']:.2f}] of {r['reviewed']} reviewed"
                  if r["reviewed"] else "nothing reviewed")
        print(f"confidence >= {r['level']:g}: {figure} ({r['flagged']:,} flagged rows)")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        try:
            folders = models.prepare_models(args.names or None, cache_dir=args.cache_dir)
            # the embedding backend `auto` picks here (the int8 ONNX file on a VNNI CPU), built ahead of a first run
            built = {name: embed.prepare_auto_backend(name, args.cache_dir) for name in folders
                     if name in embed.PREPARED_BACKENDS}
        except (models.ModelNotFound, models.ModelBuildError) as err:
            print(f"qckit models: {err}", file=sys.stderr)
            return 2
        for name, folder in folders.items():
            print(f"{name}: {folder}")
        for name, path in built.items():
            if path is not None:
                print(f"{name} (embedding backend onnx-int8): {path}")
        return 0
    for row in models.list_models(cache_dir=args.cache_dir):
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qckit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="execute the notebook chain into outputs/<run-id>/")
    p.add_argument("-p", "--params", required=True, type=Path, help="parameter profile (params/*.yaml)")
    p.add_argument("--run-id", help="run directory name (default: <profile>-<timestamp>)")
    p.add_argument("--steps", nargs="+", help="steps to run, by number or name (default: all)")
    p.add_argument("--resume", action="store_true", help="continue a run; skip steps whose inputs are unchanged")
    p.add_argument("--outputs-dir", type=Path, help="parent folder of run directories (default from params)")
    p.add_argument("--notebooks-dir", type=Path, help="folder of step notebooks (default: the kit's notebooks/)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="render a run's notebooks and index.html")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--bundle", action="store_true",
                   help="also write report/<run-id>-report.html: the index and every step page in one file")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("validate", help="check data files (official CIKM format, or your own through a profile)")
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("-p", "--params", type=Path, help="read the files as this profile's data section says "
                   "(data.columns, positive_if, task); without files, check the profile's train, dev and test files")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("compare", help="one HTML page with runs side by side (the first is the reference)")
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--output", type=Path, help="file or folder for the page (default: compare-<ids>.html beside "
                   "the first run)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("params", help="validate a parameter profile and print it resolved")
    p.add_argument("params", type=Path)
    p.set_defaults(func=_cmd_params)

    p = sub.add_parser("predict", help="score official test files with a run's model and thresholds")
    p.add_argument("--run", required=True, type=Path, help="a run directory with steps 05 and 06 done")
    p.add_argument("--input", required=True, nargs="+", type=Path, help="official-format files (labels optional)")
    p.add_argument("--output", required=True, type=Path, help="folder for submit_QC.txt, submit_QI.txt, submit.zip")
    p.add_argument("--thresholds", default="calibrated",
                   help="calibrated (step 06's, the default), paper (QC 0.4, QI 0.2) or per task: QC=0.4,QI=0.2")
    p.add_argument("--backend", choices=["hf", "vllm"],
                   help="score with transformers (hf) or a vLLM engine (GPUs, yes_no head) in place of the run's "
                   "scoring.backend")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("ablate", help="run the chain per variant and write the ablation table")
    p.add_argument("-p", "--params", required=True, type=Path)
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated: baseline, all, or data steps joined by '+' in any order (translation, "
                        "negatives, noise), e.g. translation+negatives (default: the paper's cumulative rows, "
                        "%(default)s)")
    p.add_argument("--ablation-id", help="folder name under outputs/ (default: <profile>-ablation-<time>)")
    p.add_argument("--outputs-dir", type=Path)
    p.add_argument("--resume", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_ablate)

    p = sub.add_parser("sweep", help="one run per setting of some parameters (shared steps run once), one table")
    p.add_argument("-p", "--params", required=True, type=Path)
    p.add_argument("--set", action="append", required=True, metavar="KEY=V1,V2",
                   help="a dotted parameter path and its values, split at commas outside brackets, braces and "
                        "quotes, each read as YAML: noise.threshold=0.7,0.8 or translation.sources=[en],[es,fr]; "
                        "repeat for more keys")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--grid", action="store_true", help="every combination of the keys' values (the default)")
    how.add_argument("--zip", action="store_true", help="the keys' i-th values together (as many values per key)")
    p.add_argument("--sweep-id", help="folder name under outputs/ (default: <profile>-sweep-<time>)")
    p.add_argument("--outputs-dir", type=Path)
    p.add_argument("--resume", action="store_true", help="continue a sweep; steps whose inputs are unchanged are "
                   "skipped")
    p.add_argument("--notebooks-dir", type=Path, help="folder of step notebooks (default: the kit's notebooks/)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("review", help="a CSV sheet of step 04's flagged rows to check by hand, and its verdicts back")
    review = p.add_subparsers(dest="action", required=True)
    r = review.add_parser("export", help="write a sheet: per confidence level, a seeded sample of the flagged rows")
    r.add_argument("run", type=Path, help="a run directory with step 04 done")
    r.add_argument("--per-level", type=int, default=50, help="rows drawn per level (default: %(default)s)")
    r.add_argument("--levels", default="0.7,0.8,0.9", help="confidence levels, comma-separated (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0, help="seed of the draw (default: %(default)s)")
    r.add_argument("--output", type=Path, help="the sheet to write (default: <run-id>-review.csv here; never replaced)")
    r.set_defaults(func=_cmd_review)
    r = review.add_parser("import", help="read a filled sheet's verdicts into the run (precision per level)")
    r.add_argument("run", type=Path)
    r.add_argument("sheet", type=Path, help="the sheet, its verdict column filled in")
    r.set_defaults(func=_cmd_review)

    p = sub.add_parser("models", help="materialise or list the built-in offline models")
    p.add_argument("action", choices=["prepare", "list"])
    p.add_argument("names", nargs="*", help="built-in names (default: all)")
    p.add_argument("--cache-dir", type=Path, help="model cache (default: $QCKIT_CACHE or ~/.cache/qckit)")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a message quoting the data must print on any terminal encoding
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nqckit: interrupted; `qckit run ... --resume` continues where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
