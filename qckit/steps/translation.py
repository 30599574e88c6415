"""Step 02: translate labelled rows of high-resource languages into the zero-shot languages.

Rows of ``translation.sources`` (Spanish in the paper) are translated into ``translation.targets`` (by
default the languages the audit found without training rows), keeping their labels; the category path or
item title stays as it is. Both positive and negative rows are translated, whole queries at a time, up to
``rows_per_target`` rows per target language. Each created row has ``origin = "translated"`` and the id of
its source row in ``source_id``.

Translations pass five filters, each counted per pair: ``empty`` output, output ``identical`` to the
input, ``length_ratio`` out of bounds, output not in the target ``language`` (py3langid, restricted to
the project's languages), and ``duplicate`` of a row that already exists. Pairs the chosen backend cannot
serve are listed with the reason in the metrics and the notebook, never skipped silently.

Writes ``data/translated.parquet`` (kept created rows, with ``source_language``, ``source_query``,
``backend``, ``route``), ``data/translation_dropped.parquet`` (dropped ones with ``drop_reason``),
``data/train_translated.parquet`` (the training table plus the kept rows; base columns) and
``metrics/02_translation.json``.

The filters live in ``qckit.translation_filters``, the backends in ``qckit.translate``.

Example:
    >>> from qckit.steps import translation
    >>> metrics = translation.run(params, Run("outputs/demo-1"))
    >>> metrics["headline"]["uncovered_pairs"]
    'es-de, es-pl, es-ar'
    >>> pair_table(metrics)            # requested, translated, kept and drops per pair
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from qckit import BASE_COLUMNS, TASKS
from qckit.audit import language_order
from qckit.config import Params, TranslationParams
from qckit.data import PAIRS_DTYPES, first_new_id, id_dtypes, new_ids
from qckit.progress import headless, progress
from qckit.runs import Run
from qckit.sheets import write_sheet
from qckit.steps import AUDIT
from qckit.steps import TRANSLATION as STEP
from qckit.translate import (
    APERTIUM_LINES_PER_CALL,
    TranslationCache,
    Translator,
    default_translation_cache,
    make_translator,
    translate_cached,
)
from qckit.translation_audit import add_signals, audit_sample, summary
from qckit.translation_filters import DROP_REASONS, choose_rows, drop_reasons

EXTRA_COLUMNS = ("source_language", "source_query", "backend", "route")


@dataclass
class TranslationResults:
    """What notebook 02 shows."""

    metrics: dict[str, Any]
    candidates: pd.DataFrame
    audit: pd.DataFrame  # the translations sampled for rating, with their signals (``qckit.translation_audit``)


def plan_pairs(cfg: TranslationParams, targets: Sequence[str], train: pd.DataFrame,
               translators: Mapping[str, Translator]) -> tuple[list[dict], list[dict]]:
    """Covered and uncovered (source, target) pairs, each a dict with ``pair``, ``backend`` and either
    ``route`` or ``reason``."""
    covered, uncovered = [], []
    labelled = train[train["task"].isin(cfg.tasks) & train["label"].notna()]
    for target in targets:
        for source in cfg.sources:
            if source == target:
                continue
            pair = f"{source}-{target}"
            backend = cfg.backends.get(pair, cfg.backend)
            info = {"pair": pair, "source": source, "target": target, "backend": backend}
            if not (labelled["language"] == source).any():
                uncovered.append({**info, "reason": f"no labelled training rows in {source} for tasks "
                                                    f"{', '.join(cfg.tasks)}"})
                continue
            cov = translators[backend].check(source, target)
            if cov.supported:
                covered.append({**info, "route": cov.route})
            else:
                uncovered.append({**info, "reason": cov.reason})
    return covered, uncovered


def _budgets(covered: list[dict], budget: int | None) -> dict[str, int | None]:
    """The per-target budget shared evenly by the pairs that reach that target."""
    out: dict[str, int | None] = {}
    for target in dict.fromkeys(p["target"] for p in covered):
        pairs = [p["pair"] for p in covered if p["target"] == target]
        for i, pair in enumerate(pairs):
            out[pair] = None if budget is None else budget // len(pairs) + (i < budget % len(pairs))
    return out


# the step ----------------------------------------------------------------------------------------
def _translators(cfg: TranslationParams, params: Params, given: Mapping[str, Translator] | None
                 ) -> dict[str, Translator]:
    names = {cfg.backend, *cfg.backends.values()}
    made = dict(given or {})
    for name in names - set(made):
        made[name] = make_translator(name, model=cfg.model, prompt=cfg.prompt, pivot=cfg.pivot,
                                     batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                                     engine=cfg.vllm_engine, cache_dir=params.models.cache_dir)
    return made


def _translate_pair(info: dict, rows: pd.DataFrame, translator: Translator, cache: TranslationCache | None,
                    batch_size: int) -> tuple[pd.DataFrame, dict]:
    source, target = info["source"], info["target"]
    # no bar at all when headless: tqdm.auto warns about ipywidgets on import inside a kernel
    mapping, stats = translate_cached(translator, rows["query"].astype(str).tolist(), source, target,
                                      cache=cache, batch_size=batch_size,
                                      progress=None if headless() else progress)
    created = rows.assign(
        language=target, source_query=rows["query"], query=rows["query"].astype(str).map(mapping),
        origin="translated", source_id=rows["id"], source_language=source, backend=info["backend"],
        route=info["route"])
    figures = {"requested": len(rows), "texts": stats.texts, "cache_hits": stats.cache_hits,
               "translated": stats.translated, "seconds": round(stats.seconds, 3),
               "sentences_per_s": None if stats.sentences_per_s is None else round(stats.sentences_per_s, 1)}
    return created, figures


def _with_ids(kept: pd.DataFrame, first_id: int | str, targets: Sequence[str], sources: Sequence[str]
              ) -> pd.DataFrame:
    """New ids from ``first_id`` on (``qckit.data.new_ids``), in a fixed order: target, source language, source
    row id."""
    order = kept.assign(_t=kept["language"].map({t: i for i, t in enumerate(targets)}),
                        _s=kept["source_language"].map({s: i for i, s in enumerate(sources)}))
    order = order.sort_values(["_t", "_s", "source_id", "task"], kind="stable").drop(columns=["_t", "_s"])
    return order.assign(id=new_ids(first_id, len(order))).reset_index(drop=True)


def _typed(df: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """The pairs table's dtypes, ids as integers or strings as the input's ``ids`` are."""
    dtypes = {**PAIRS_DTYPES, **id_dtypes(ids)}
    return df.astype({c: t for c, t in dtypes.items() if c in df.columns and (c != "id" or len(df))})


def run(params: Params, run: Run, *, translators: Mapping[str, Translator] | None = None) -> dict[str, Any]:
    """Translate, filter and write (see the module docstring); returns the metrics.

    Args:
        translators: backends by name to use instead of building them from the parameters (tests,
            or a translator already loaded in a notebook).
    """
    cfg = params.translation
    train = run.read_table("train")
    audit = run.read_metrics(AUDIT)
    targets = list(cfg.targets) if cfg.targets is not None else list(audit.get("zero_shot_languages", []))
    metrics: dict[str, Any] = {"enabled": cfg.enabled, "backend": cfg.backend, "backends": dict(cfg.backends),
                               "sources": list(cfg.sources), "targets": targets, "tasks": list(cfg.tasks)}
    if not cfg.enabled:
        return _finish(run, train, pd.DataFrame(columns=[*BASE_COLUMNS, *EXTRA_COLUMNS, "drop_reason"]),
                       metrics, [], [], {})
    made = _translators(cfg, params, translators)
    covered, uncovered = plan_pairs(cfg, targets, train, made)
    cache = TranslationCache(default_translation_cache(cfg.cache_dir))
    budgets = _budgets(covered, cfg.rows_per_target)
    labelled = train[train["task"].isin(cfg.tasks) & train["label"].notna()]
    frames, figures = [], {}
    for info in covered:
        rows = choose_rows(labelled[labelled["language"] == info["source"]], budgets[info["pair"]],
                           seed=params.run.seed, key=info["pair"])
        batch = APERTIUM_LINES_PER_CALL if info["backend"] == "apertium" else cfg.batch_size
        created, figures[info["pair"]] = _translate_pair(info, rows, made[info["backend"]], cache, batch)
        frames.append(created)
        run.log(f"{STEP}: {info['pair']} via {info['route']}: {len(rows)} rows, "
                f"{figures[info['pair']]['translated']} texts translated, {figures[info['pair']]['cache_hits']} cached")
    candidates = (pd.concat(frames, ignore_index=True) if frames
                  else pd.DataFrame(columns=[*BASE_COLUMNS, *EXTRA_COLUMNS]))
    candidates["drop_reason"] = drop_reasons(
        candidates, train, min_length_ratio=cfg.min_length_ratio, max_length_ratio=cfg.max_length_ratio,
        langid=cfg.langid, langid_min_prob=cfg.langid_min_prob) if len(candidates) else pd.Series(dtype=object)
    metrics["cache_dir"] = str(cache.path.parent)
    _audit(run, cfg, params.run.seed, candidates, covered, made, cache, metrics)
    return _finish(run, train, candidates, metrics, covered, uncovered, figures)


def _audit(run: Run, cfg: TranslationParams, seed: int, candidates: pd.DataFrame, covered: list[dict],
           made: Mapping[str, Translator], cache: TranslationCache, metrics: dict[str, Any]) -> None:
    """The audit sample with its signals: ``data/translation_audit.parquet``, the sheet to rate and a summary."""
    sample = audit_sample(candidates, per_language=cfg.audit_rows, seed=seed)
    if sample.empty:
        return
    backends = {(p["source"], p["target"]): made[p["backend"]] for p in covered}

    def round_trip(texts: list[str], source: str, target: str) -> list[str] | None:
        translator = backends.get((target, source))  # the forward pair's backend, asked for the reverse
        if translator is None or not translator.check(source, target).supported:
            return None
        mapping, _ = translate_cached(translator, texts, source, target, cache=cache, batch_size=cfg.batch_size)
        return [mapping[t] for t in texts]

    audit = add_signals(sample, round_trip)
    run.write_table("translation_audit", audit)
    sheet = write_sheet(run.path("report", "translation_audit.csv"), audit)
    metrics["audit"] = {"rows": len(audit), "sheet": str(sheet.relative_to(run.root)),
                        "summary": json.loads(summary(audit).to_json(orient="records", double_precision=4))}


def _first_id(run: Run, train: pd.DataFrame) -> int | str:
    return first_new_id([train] + [run.read_table(s) for s in ("dev", "test") if run.has_table(s)], "translated")


def _finish(run: Run, train: pd.DataFrame, candidates: pd.DataFrame, metrics: dict[str, Any],
            covered: list[dict], uncovered: list[dict], figures: dict[str, dict]) -> dict[str, Any]:
    kept_mask = candidates["drop_reason"].isna()
    kept = _with_ids(candidates[kept_mask], _first_id(run, train), metrics["targets"], metrics["sources"])
    kept = _typed(kept[[*BASE_COLUMNS, *EXTRA_COLUMNS]], train["id"])
    dropped = _typed(candidates[~kept_mask].drop(columns="id"), train["id"]).reset_index(drop=True)
    augmented = _typed(pd.concat([train[list(BASE_COLUMNS)], kept[list(BASE_COLUMNS)]], ignore_index=True),
                       train["id"])
    run.write_table("translated", kept)
    run.write_table("translation_dropped", dropped)
    run.write_table("train_translated", augmented)
    metrics.update(_figures(candidates, covered, uncovered, figures))
    metrics["rows"] = {"train": len(train), "translated": len(kept), "train_translated": len(augmented)}
    metrics["coverage"] = {
        "before": _counts(train), "after": _counts(augmented),
    }
    metrics["languages_added"] = language_order(set(kept["language"]) - set(train["language"]))
    metrics["headline"] = _headline(metrics)
    run.write_metrics(STEP, metrics)
    h = metrics["headline"]
    run.log(f"{STEP}: {h['translated_rows']} rows kept; uncovered pairs: {h['uncovered_pairs']}")
    return metrics


def load(run: Run) -> TranslationResults:
    """The metrics and every translated candidate (kept ones with their new ``id``, dropped ones with
    their ``drop_reason``)."""
    kept, dropped = run.read_table("translated"), run.read_table("translation_dropped")
    frames = [f for f in (kept, dropped) if len(f)]
    candidates = pd.concat(frames, ignore_index=True) if frames else kept
    if "drop_reason" not in candidates.columns:  # every candidate kept, or none at all
        candidates = candidates.assign(drop_reason=pd.Series(None, index=candidates.index, dtype=object))
    audit = run.read_table("translation_audit") if run.has_table("translation_audit") else add_signals(
        pd.DataFrame())
    return TranslationResults(run.read_metrics(STEP), candidates, audit)


def _counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """rows per task and language"""
    return {t: {k: int(v) for k, v in part["language"].value_counts().items()}
            for t, part in df.groupby("task", sort=False)}


def _figures(candidates: pd.DataFrame, covered: list[dict], uncovered: list[dict],
             figures: dict[str, dict]) -> dict[str, Any]:
    pairs = []
    for info in covered:
        part = candidates[(candidates["source_language"] == info["source"]) &
                          (candidates["language"] == info["target"])]
        reasons = part["drop_reason"].value_counts()
        pairs.append({**info, **figures[info["pair"]], "kept": int(part["drop_reason"].isna().sum()),
                      "dropped": {r: int(reasons.get(r, 0)) for r in DROP_REASONS}})
    fresh = sum(p["translated"] for p in pairs)
    seconds = sum(p["seconds"] for p in pairs)
    return {
        "pairs": pairs,
        "uncovered_pairs": uncovered,
        "drop_reasons": {r: sum(p["dropped"][r] for p in pairs) for r in DROP_REASONS},
        "throughput": {"sentences": fresh, "seconds": round(seconds, 3),
                       "sentences_per_s": round(fresh / seconds, 1) if fresh and seconds > 0 else None},
        "cache": {"hits": sum(p["cache_hits"] for p in pairs), "translated": fresh},
    }


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    requested = sum(p["requested"] for p in m.get("pairs", []))
    speed = m.get("throughput", {}).get("sentences_per_s")
    return {
        "backend": m["backend"] + (f" (+{len(m['backends'])} overrides)" if m["backends"] else ""),
        "translated_rows": m["rows"]["translated"],
        "keep_rate": round(m["rows"]["translated"] / requested, 4) if requested else None,
        "pairs_translated": ", ".join(p["pair"] for p in m.get("pairs", [])) or "none",
        "uncovered_pairs": ", ".join(p["pair"] for p in m.get("uncovered_pairs", [])) or "none",
        "languages_added": ", ".join(m["languages_added"]) or "none",
        "sentences_per_s": speed if speed is not None else ("all cached" if m.get("pairs") else "n/a"),
        "cache_hits": m.get("cache", {}).get("hits", 0),
    }


# tables for the notebook -------------------------------------------------------------------------
def pair_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per translated pair: backend, route, rows requested, texts, translated, cached, kept,
    keep rate and sentences per second."""
    cols = ["pair", "backend", "route", "requested", "texts", "translated", "cache_hits", "kept", "sentences_per_s"]
    df = pd.DataFrame([{c: p.get(c) for c in cols} for p in metrics.get("pairs", [])], columns=cols)
    df.insert(len(cols) - 1, "keep_rate", (df["kept"] / df["requested"].where(df["requested"] > 0)).round(3))
    return df


def drop_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Rows dropped per pair (rows) and filter (columns), with a total row and column."""
    df = pd.DataFrame({p["pair"]: p["dropped"] for p in metrics.get("pairs", [])}, index=list(DROP_REASONS)).T
    df = df.reindex(columns=list(DROP_REASONS)).fillna(0).astype(int)
    df["total"] = df.sum(axis=1)
    if len(df):
        df.loc["all pairs"] = df.sum(axis=0)
    return df.rename_axis("pair")


def uncovered_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Pairs that were asked for but not translated, with the backend and the reason."""
    return pd.DataFrame(metrics.get("uncovered_pairs", []), columns=["pair", "backend", "reason"])


def side_by_side(candidates: pd.DataFrame, n: int = 10, *, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of source queries beside their translations, kept and dropped ones."""
    cols = ["task", "source_language", "language", "source_query", "query", "label", "drop_reason"]
    if candidates.empty or n <= 0:
        return pd.DataFrame(columns=cols)
    sample = candidates.drop_duplicates(["source_language", "language", "source_query"])
    sample = sample.sample(min(n, len(sample)), random_state=seed).sort_values(["language", "source_query"])
    sample = sample[cols].assign(drop_reason=sample["drop_reason"].fillna(""))
    return sample.rename(columns={"source_query": "source", "query": "translation",
                                  "drop_reason": "dropped_by"}).reset_index(drop=True)


def coverage_before_after(metrics: Mapping[str, Any], languages: Sequence[str] | None = None) -> pd.DataFrame:
    """Training rows per task and language before and after the step, tidy: ``task, language, origin,
    rows`` with origin ``original`` or ``translated``. Languages with training rows and the step's
    targets are shown, plus ``languages`` (e.g. ``qckit.LANGUAGES``), zero where they have no rows."""
    before, after = metrics["coverage"]["before"], metrics["coverage"]["after"]
    present = {x for counts in (*before.values(), *after.values()) for x in counts}
    langs = language_order(set(languages or ()) | set(metrics.get("targets", [])) | present)
    rows = []
    for task in [t for t in TASKS if t in after or t in before]:
        for lang in langs:
            b, a = before.get(task, {}).get(lang, 0), after.get(task, {}).get(lang, 0)
            rows += [{"task": task, "language": lang, "origin": "original", "rows": b},
                     {"task": task, "language": lang, "origin": "translated", "rows": a - b}]
    return pd.DataFrame(rows, columns=["task", "language", "origin", "rows"])
