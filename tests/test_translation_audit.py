"""Step 02's translation audit: a seeded sample per target language, its signals, the sheet to rate."""
from __future__ import annotations

import csv

import pandas as pd
import pytest
from test_translate import FakeTranslator, _smoke

from qckit.sheets import guard_cell, unguard_cell
from qckit.steps import translation as translation_step
from qckit.translate import Coverage
from qckit.translation_audit import AUDIT_COLUMNS, add_signals, audit_sample, similarity, summary


def candidates(n: int = 30) -> pd.DataFrame:
    rows = []
    for target in ("it", "pt"):
        for i in range(n):
            rows.append({"task": "QC", "source_language": "es", "language": target,
                         "source_query": f"zapatillas mujer {i}", "query": f"scarpe donna {i}" if i % 3 else
                         f"zapatillas mujer {i}", "drop_reason": None if i % 3 else "identical"})
    rows += [dict(rows[0])]  # the same translation twice (two rows of one query): audited once
    return pd.DataFrame(rows)


def test_the_sample_is_per_language_distinct_and_seeded():
    sample = audit_sample(candidates(), per_language=10, seed=1)
    assert sample.groupby("language").size().to_dict() == {"it": 10, "pt": 10}
    assert not sample.duplicated(["language", "source_query"]).any()
    assert sample.equals(audit_sample(candidates(), per_language=10, seed=1))
    assert not sample.equals(audit_sample(candidates(), per_language=10, seed=2))
    everything = audit_sample(candidates(), per_language=1000, seed=1)
    assert len(everything) == 60 and everything["kept"].sum() == 40  # both kept and dropped ones
    assert audit_sample(candidates(), per_language=0, seed=1).empty


def test_signals_say_what_a_rater_needs():
    sample = audit_sample(candidates(6), per_language=10, seed=0)
    back = {}

    def round_trip(texts, source, target):
        back[(source, target)] = list(texts)
        return [t.replace("scarpe donna", "zapatillas mujer") for t in texts] if source == "it" else None

    audit = add_signals(sample, round_trip)
    assert list(audit.columns) == AUDIT_COLUMNS and set(back) == {("it", "es"), ("pt", "es")}
    it, pt = audit[audit["language"].eq("it")], audit[audit["language"].eq("pt")]
    assert (it["round_trip_similarity"] == 1.0).all() and pt["round_trip"].isna().all()
    assert (audit["identical"] == ~audit["kept"]).all()  # the fake's untranslated rows are the dropped ones
    assert audit.loc[audit["identical"], "length_ratio"].eq(1.0).all()
    assert audit["p_target"].between(0, 1).all() and audit["identified_language"].notna().all()
    assert (audit["rating"] == "").all() and (audit["note"] == "").all()
    table = summary(audit)
    assert table["language"].tolist() == ["it", "pt"] and table["rows"].tolist() == [6, 6]
    assert table.loc[0, "round_trip_rows"] == 6 and pd.isna(table.loc[1, "mean_round_trip_similarity"])
    assert table["identical_share"].tolist() == [0.333, 0.333]  # 2 of 6, rounded to 3 places


def test_similarity_is_a_character_measure():
    assert similarity("Scarpe  donna", "scarpe donna") == 1.0
    assert 0.0 < similarity("scarpe donna", "scarpa donne") < 1.0 and similarity("abc", "xyz") == 0.0


class ReversibleTranslator(FakeTranslator):
    """Serves es->it and it->es: the round trip of the audit can run."""

    def __init__(self):
        super().__init__(pairs=(("es", "it"), ("it", "es")))

    def check(self, source, target):
        ok = (source, target) in self.pairs
        return Coverage(True, route="word list") if ok else Coverage(False, reason="no such pair")

    def translate(self, texts, source, target):
        words = self.WORDS if source == "es" else {v: k for k, v in self.WORDS.items()}
        self.calls.append(list(texts))
        return [" ".join(words.get(w, w) for w in t.split()) for t in texts]


def test_the_step_writes_the_sheet_with_round_trips(tmp_path):
    params, run = _smoke(tmp_path, langid="off", rows_per_target=None, audit_rows=5)
    metrics = translation_step.run(params, run, translators={"apertium": ReversibleTranslator()})
    audit = translation_step.load(run).audit
    assert len(audit) == metrics["audit"]["rows"] == 5 and set(audit["language"]) == {"it"}
    assert audit["round_trip"].notna().all() and metrics["audit"]["summary"][0]["round_trip_rows"] == 5
    sheet = run.path(metrics["audit"]["sheet"])
    assert sheet == run.path("report", "translation_audit.csv") and oct(sheet.stat().st_mode & 0o777) == "0o644"
    with open(sheet, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == AUDIT_COLUMNS and len(rows) == 5 and {r["rating"] for r in rows} == {""}


def test_no_audit_when_it_is_off(tmp_path):
    params, run = _smoke(tmp_path, langid="off", audit_rows=0)
    metrics = translation_step.run(params, run, translators={"apertium": FakeTranslator()})
    assert "audit" not in metrics and translation_step.load(run).audit.empty
    assert not run.path("report", "translation_audit.csv").exists()


@pytest.mark.parametrize("text", ["=1+1", "+cmd", "-2", "@SUM(A1)", "'quoted", "plain", ""])
def test_sheet_cells_never_start_a_formula(text):
    guarded = guard_cell(text)
    assert not guarded.startswith(("=", "+", "-", "@")) and unguard_cell(guarded) == text
