"""Dev F1 with and without mined hard negatives (step 03), best CPU model, real QC and QI samples.

Each F1 is at held-out thresholds (each query-grouped dev fold judged at the threshold fitted on the
others), beside the all-positive F1 of the same rows and with a bootstrap 95% interval.

    python -m benchmarks.negatives_effect [--datasets QC,QI] [--keep DIR]
"""
from __future__ import annotations

import sys

from benchmarks.realdata import effect_main

if __name__ == "__main__":
    sys.exit(effect_main("negatives_effect", "negatives", __doc__))
