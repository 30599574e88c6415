"""A sample of step 02's translations per target language, with signals a person can rate them by.

Machine translation of two-word queries fails quietly (a word left as it was, a brand translated, another
language): the filters of ``qckit.translation_filters`` catch some of it, a person must judge the rest. Per
target language a seeded sample of ``translation.audit_rows`` distinct translations (kept and dropped ones)
gets, per row:

- ``identified_language`` and ``p_target``: py3langid's best guess among the project's languages and its
  probability of the target language;
- ``length_ratio``: characters of the translation over characters of the source;
- ``identical``: the translation equals the source once case and spaces are normalised;
- ``round_trip`` and ``round_trip_similarity``: the translation translated back into the source language, where
  the backend serves the reverse pair (Apertium ita->spa for es->it), and how close it comes to the source
  (``difflib``'s ratio of matching characters on the normalised texts, 1.0 identical; a character measure,
  not a judgement of meaning, so it ranks rows for a person rather than deciding anything).

The sheet (``report/translation_audit.csv``) has empty ``rating`` and ``note`` columns to fill in;
``summary`` gives one row per target language for notebook 02.

Example:
    >>> sample = audit_sample(candidates, per_language=100, seed=13)
    >>> audit = add_signals(sample, round_trip=None)      # no reverse translation
    >>> summary(audit)[["language", "rows", "identical_share", "mean_p_target"]]
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from qckit import LANGUAGES
from qckit.features import normalise_query
from qckit.translation_filters import language_probabilities

AUDIT_COLUMNS = ["pair", "task", "source_language", "language", "source_query", "translation", "kept", "drop_reason",
                 "identified_language", "p_target", "length_ratio", "identical", "round_trip",
                 "round_trip_similarity", "rating", "note"]
SUMMARY_COLUMNS = ["language", "rows", "kept_share", "identical_share", "identified_share", "mean_p_target",
                   "median_length_ratio", "round_trip_rows", "mean_round_trip_similarity"]
# (texts, source, target) -> translations, or None where the backend does not serve the pair
RoundTrip = Callable[[list[str], str, str], "list[str] | None"]


def audit_sample(candidates: pd.DataFrame, *, per_language: int, seed: int) -> pd.DataFrame:
    """Up to ``per_language`` distinct translations per target language, drawn with ``seed`` from the step's
    candidates (``source_language, language, task, source_query, query, drop_reason``), kept and dropped."""
    if candidates.empty or per_language <= 0:
        return pd.DataFrame(columns=AUDIT_COLUMNS[:8])
    distinct = candidates.drop_duplicates(["source_language", "language", "source_query"])
    distinct = distinct.sort_values(["language", "source_language", "source_query"], kind="stable")
    rng = np.random.default_rng(seed)
    parts = []
    for _, part in distinct.groupby("language", sort=True):
        take = rng.permutation(len(part))[:per_language]
        parts.append(part.iloc[np.sort(take)])
    sample = pd.concat(parts, ignore_index=True)
    reason = sample["drop_reason"].astype(object)
    return pd.DataFrame({
        "pair": sample["source_language"] + "-" + sample["language"], "task": sample["task"],
        "source_language": sample["source_language"], "language": sample["language"],
        "source_query": sample["source_query"].astype(str), "translation": sample["query"].astype(str),
        "kept": reason.isna().to_numpy(), "drop_reason": reason.where(reason.notna(), None),
    })


def similarity(a: str, b: str) -> float:
    """Share of matching characters of two texts once normalised (``difflib.SequenceMatcher.ratio``)."""
    return difflib.SequenceMatcher(None, normalise_query(a), normalise_query(b), autojunk=False).ratio()


def add_signals(sample: pd.DataFrame, round_trip: RoundTrip | None = None,
                languages: Sequence[str] = LANGUAGES) -> pd.DataFrame:
    """The sample with the per-row signals (see the module docstring) and empty ``rating`` / ``note``."""
    out = sample.copy()
    if out.empty:
        return pd.DataFrame(columns=AUDIT_COLUMNS)
    codes = list(dict.fromkeys([*languages, *out["language"], *out["source_language"]]))
    probs = language_probabilities(out["translation"].tolist(), codes)
    known = probs.notna().any(axis=1).to_numpy()
    out["identified_language"] = np.where(known, probs.fillna(-1.0).idxmax(axis=1).to_numpy(), None)
    out["p_target"] = [probs[lang].iloc[i] for i, lang in enumerate(out["language"])]
    source_chars = out["source_query"].str.len().replace(0, np.nan)
    out["length_ratio"] = (out["translation"].str.len() / source_chars).round(3)
    out["identical"] = [normalise_query(a) == normalise_query(b)
                        for a, b in zip(out["source_query"], out["translation"])]
    back = pd.Series(None, index=out.index, dtype=object)
    if round_trip is not None:
        for (source, target), part in out.groupby(["source_language", "language"], sort=True):
            texts = part["translation"].tolist()
            found = round_trip(texts, target, source)
            if found is not None:
                back[part.index] = found
    back = back.where(back.notna(), None)
    out["round_trip"] = back
    out["round_trip_similarity"] = [None if b is None else round(similarity(a, b), 3)
                                    for a, b in zip(out["source_query"], back)]
    out["rating"], out["note"] = "", ""
    return out[AUDIT_COLUMNS].reset_index(drop=True)


def summary(audit: pd.DataFrame) -> pd.DataFrame:
    """One row per target language: rows audited, share kept by the filters, share identical to the source,
    share identified as the target language, mean p(target), median length ratio, rows with a round trip and
    their mean similarity to the source."""
    if audit.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = []
    for language, part in audit.groupby("language", sort=True):
        sims = pd.to_numeric(part["round_trip_similarity"], errors="coerce").dropna()
        rows.append({
            "language": language, "rows": len(part), "kept_share": round(float(part["kept"].mean()), 3),
            "identical_share": round(float(part["identical"].astype(bool).mean()), 3),
            "identified_share": round(float((part["identified_language"] == language).mean()), 3),
            "mean_p_target": round(float(pd.to_numeric(part["p_target"], errors="coerce").mean()), 3),
            "median_length_ratio": round(float(pd.to_numeric(part["length_ratio"], errors="coerce").median()), 3),
            "round_trip_rows": len(sims),
            "mean_round_trip_similarity": round(float(sims.mean()), 3) if len(sims) else None,
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
