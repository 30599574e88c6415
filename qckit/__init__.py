"""qckit: data-centric training and analysis kit for multilingual e-commerce search relevance.

Heavy libraries (torch, transformers, faiss, vllm) are imported inside the functions that use them,
so importing qckit and running `qckit validate` stay fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

TASKS = ("QC", "QI")
LANGUAGES = ("en", "fr", "es", "ko", "pt", "ja", "de", "it", "pl", "ar", "th", "vn", "id")
# The CIKM AnalytiCup 2025 training set held only these; de, it, pl, ar were test-only.
OFFICIAL_TRAIN_LANGUAGES = ("en", "fr", "es", "ko", "pt", "ja")
BASE_COLUMNS = ("id", "task", "language", "query", "target", "label", "origin", "source_id")
