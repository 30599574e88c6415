"""Command line: `qckit run | report | validate | params | predict | ablate | models`.

Heavy libraries (torch, transformers, papermill) are imported inside the functions that use them, so
`qckit validate` starts without loading them.
Exit codes: 0 success, 1 the work failed (invalid data, a failed step), 2 bad usage or parameters.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qckit import models
from qckit.ablation import run_ablation
from qckit.config import ParamsError, dump_params, load_params
from qckit.data import DataError, validate_file
from qckit.heads import UnsafeArtefactError
from qckit.pipeline import RunError, check_run_id, run_chain
from qckit.report import bundle_path, render_report
from qckit.submission import SubmissionError, predict_files


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
    failed = 0
    for path in args.files:
        report = validate_file(path)
        print(report.format())
        failed += not report.ok
    if len(args.files) > 1:
        print(f"\n{len(args.files) - failed} of {len(args.files)} files valid")
    return 1 if failed else 0


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
        written = predict_files(args.run, args.input, args.output, thresholds=args.thresholds, report=report)
    except (SubmissionError, DataError, UnsafeArtefactError, FileNotFoundError) as err:
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
            args.params, variants=[v.strip() for v in args.variants.split(",") if v.strip()],
            ablation_id=args.ablation_id, outputs_dir=args.outputs_dir, resume=args.resume,
            progress=not args.quiet,
        )
    except (ParamsError, RunError, ValueError) as err:
        print(f"qckit ablate: {err}", file=sys.stderr)
        return 2
    print(table.to_string(index=False))
    print(f"report: {report}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        try:
            folders = models.prepare_models(args.names or None, cache_dir=args.cache_dir)
        except models.ModelNotFound as err:
            print(f"qckit models: {err}", file=sys.stderr)
            return 2
        for name, folder in folders.items():
            print(f"{name}: {folder}")
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

    p = sub.add_parser("validate", help="check data files in the official CIKM format")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("params", help="validate a parameter profile and print it resolved")
    p.add_argument("params", type=Path)
    p.set_defaults(func=_cmd_params)

    p = sub.add_parser("predict", help="score official test files with a run's model and thresholds")
    p.add_argument("--run", required=True, type=Path, help="a run directory with steps 05 and 06 done")
    p.add_argument("--input", required=True, nargs="+", type=Path, help="official-format files (labels optional)")
    p.add_argument("--output", required=True, type=Path, help="folder for submit_QC.txt, submit_QI.txt, submit.zip")
    p.add_argument("--thresholds", default="calibrated",
                   help="calibrated (step 06's, the default), paper (QC 0.4, QI 0.2) or per task: QC=0.4,QI=0.2")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("ablate", help="run the chain per variant and write the ablation table")
    p.add_argument("-p", "--params", required=True, type=Path)
    p.add_argument("--variants", default="baseline,translation,negatives,noise,all",
                   help="comma-separated: baseline, translation, negatives, noise, all")
    p.add_argument("--ablation-id", help="folder name under outputs/ (default: <profile>-ablation-<time>)")
    p.add_argument("--outputs-dir", type=Path)
    p.add_argument("--resume", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_ablate)

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
