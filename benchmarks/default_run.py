"""Wall time and peak memory of the default run per step, and of the smoke run; whether the first run learns.

Runs `qckit run` on params/default.yaml and params/smoke.yaml into a temporary folder (the built-in
models must be prepared; their one-time materialisation is not timed) and reads each step's time and
the peak resident memory of its kernel from run_status.json. For the default run it also reads step 06's
dev F1 at held-out thresholds per task beside the all-positive F1 of the same rows: the first report a
newcomer sees must show a model that learned (at least LEARNED_MARGIN above all-positive on QC and QI).

    python -m benchmarks.default_run [--only smoke]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, write_result

GOALS = {"default": (600.0, 6 * 1024.0), "smoke": (120.0, 6 * 1024.0)}  # seconds, MiB
LEARNED_MARGIN = 0.05  # dev F1 at held-out thresholds above the all-positive F1, per task (default run)


def time_profile(profile: str, out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "run", "-p", f"params/{profile}.yaml", "--run-id", profile, "-q",
         "--outputs-dir", str(out)], cwd=REPO, capture_output=True, text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"default_run: the {profile} run failed:\n{proc.stderr[-3000:]}")
    status = json.loads((out / profile / "run_status.json").read_text())
    steps = {s["step"]: {"seconds": s["seconds"], "peak_rss_mib": s["peak_rss_mib"]} for s in status["steps"]}
    peak = max((s["peak_rss_mib"] or 0) for s in steps.values())
    headline = {}
    for name in ("05_fine_tuning", "06_calibration"):
        path = out / profile / "metrics" / f"{name}.json"
        if path.exists():
            headline[name] = json.loads(path.read_text()).get("headline", {})
    calibration = json.loads((out / profile / "metrics" / "06_calibration.json").read_text())
    learned = {task: {"f1_held_out": round(m["f1_held_out_threshold"], 4),
                      "all_positive_f1": round(m["all_positive_f1"], 4),
                      "gain": round(m["f1_held_out_threshold"] - m["all_positive_f1"], 4)}
               for task, m in calibration["tasks"].items()}
    return {"wall_seconds": round(wall, 1), "peak_step_rss_mib": peak, "steps": steps, "headline": headline,
            "dev_f1": learned}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(GOALS))
    args = parser.parse_args(argv)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="qckit-bench-") as tmp:
        for profile in [args.only] if args.only else ["smoke", "default"]:
            figures[profile] = time_profile(profile, Path(tmp))
            print(profile, figures[profile]["wall_seconds"], "s", figures[profile]["peak_step_rss_mib"], "MiB")
    met = all(f["wall_seconds"] <= GOALS[p][0] and f["peak_step_rss_mib"] <= GOALS[p][1] for p, f in figures.items())
    if "default" in figures:
        met = met and all(t["gain"] >= LEARNED_MARGIN for t in figures["default"]["dev_f1"].values())
    path = write_result(
        "default_run",
        baseline="the goals themselves (10 min / 6 GiB default, 2 min smoke); no other tool runs this chain",
        figures=figures,
        goal=f"default run under 10 minutes and 6 GiB on 2 cores, its dev F1 (held-out thresholds) at least "
             f"{LEARNED_MARGIN} above all-positive for QC and QI; smoke run under 2 minutes",
        met=met, data="params/default.yaml (synthetic demo) and params/smoke.yaml",
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
