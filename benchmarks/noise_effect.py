"""Dev F1 with and without label-noise filtering (step 04), best CPU model, real QC and QI samples.

Twice per sample: on the training set as published (its own annotation noise: the paper's comparison,
the final model trained on the noisy set, then on the set step 04 cleaned), and on a copy with 10% of
its labels flipped (seed 0), where the noise is known to be there.
Each F1 is at held-out thresholds, beside the all-positive F1 and with a bootstrap 95% interval. The
detector's own precision/recall is the noise_detection benchmark.

    python -m benchmarks.noise_effect [--datasets QC,QI] [--keep DIR]
"""
from __future__ import annotations

import sys

from benchmarks.realdata import effect_main

if __name__ == "__main__":
    sys.exit(effect_main("noise_effect", "noise", __doc__, flip_rates=(None, 0.1)))
