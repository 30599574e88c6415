"""Misspelled queries: keyboard typos injected into texts at a rate, and typo'd copies of training rows.

The paper's first open question is how a relevance model holds up when users misspell their queries.
:func:`add_typos` makes such queries; :func:`typo_copies` appends typo'd copies of training rows
(``augmentation.typos``, step 05); step 07 scores dev again with typo'd queries (``analysis.typo_rate``).

How a typo is made:

- each letter (``str.isalpha``) starts one edit with probability ``rate``; digits, spaces, punctuation and
  combining marks are never edited, and only letters are inserted;
- the edits (``kinds``): ``substitute`` (a keyboard neighbour instead of the letter), ``insert`` (a keyboard
  neighbour typed after it: two keys hit at once), ``delete`` (the letter left out), ``transpose`` (the
  letter swapped with the next one, when that is a different letter); one edit is drawn among those that
  apply to the letter. A transposition uses two letters, so edits per letter come out a little below
  ``rate`` (about ``rate / (1 + rate / 4)`` with the four kinds);
- keyboard neighbours come from a QWERTY map of the 26 Latin letters (the keys left, right, above and
  below on the staggered rows); an accented letter has the neighbours of its base letter (``é`` those of
  ``e``), and case is kept. French (AZERTY) and German (QWERTZ) keep QWERTY: those layouts move only a
  handful of keys (a/q, z/w, y/z, m), and the neighbours stay plausible slips for the rest;
- letters with no key on that map (CJK, Hangul, Thai, Arabic, and Latin letters such as ``ł``, ``đ`` or
  ``ß``) get deletions and transpositions only: those slips happen with any input method, whereas
  neighbours would need each script's layout, and CJK is typed through an IME, where a slip picks another
  conversion candidate rather than a neighbouring key.

Each text's edits come from a generator seeded by a hash of ``(seed, text)``: the same seed gives the same
output whatever the batch, its order or the process, and a text gets the same misspelling wherever it
appears (a query paired with several targets is misspelt once, as a user would have typed it).

Written here rather than taken from PyPI: ``nlpaug`` (no release since 2022) and ``typo`` (one edit per
call) seed Python's global random state, ``textnoisr`` draws replacement letters uniformly from a set (no
keyboard neighbours) and brings in ``datasets``, and ``multypo`` needs nltk, stanza and pyarabic; what
the kit needs is a few dozen lines of the standard library.

Example:
    >>> add_typos(["running shoes", "zapatos rojos"], 0.1, seed=0)
    >>> typo_copies(train, rate=0.1, share=0.2, seed=13)[["id", "source_id", "query", "origin"]]
"""
from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from qckit.data import first_new_id, id_dtypes, new_ids

KINDS = ("substitute", "insert", "delete", "transpose")
QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
ORIGIN = "augmented"


def _qwerty_neighbours() -> dict[str, str]:
    """Letter -> its neighbouring keys: left and right, and on the staggered rows above (same and next column)
    and below (previous and same column)."""
    rows = QWERTY_ROWS
    out = {}
    for r, row in enumerate(rows):
        for c, letter in enumerate(row):
            cells = [(r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)]
            out[letter] = "".join(rows[i][j] for i, j in cells if 0 <= i < len(rows) and 0 <= j < len(rows[i]))
    return out


NEIGHBOURS = _qwerty_neighbours()


def keyboard_neighbours(letter: str) -> str:
    """The QWERTY neighbours of ``letter`` in its case; an accented letter's are its base letter's; ``""`` for
    a letter with no key on the map.

    Example:
        >>> keyboard_neighbours("s"), keyboard_neighbours("É"), keyboard_neighbours("東")
        ('adwezx', 'WRSD', '')
    """
    base = unicodedata.normalize("NFD", letter)[:1].lower()
    near = NEIGHBOURS.get(base, "")
    return near.upper() if letter.isupper() else near


def _check(rate: float, kinds: Sequence[str]) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"typo rate must be between 0 and 1, got {rate}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"typo kinds must be some of {', '.join(KINDS)}, got {list(kinds)}")


def _text_seed(seed: int, text: str) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def misspell(text: str, rate: float, *, seed: int, kinds: Sequence[str] = KINDS) -> str:
    """``text`` with typos (see the module docstring); a value that is not a string comes back as it is."""
    _check(rate, kinds)
    if not isinstance(text, str) or rate == 0.0:
        return text
    wanted = [k for k in KINDS if k in kinds]  # a fixed order: the draw must not depend on how kinds was given
    rng = random.Random(_text_seed(seed, text))
    out: list[str] = []
    i = 0
    while i < len(text):
        letter = text[i]
        if not letter.isalpha() or rng.random() >= rate:
            out.append(letter)
            i += 1
            continue
        following = text[i + 1:i + 2]
        near = keyboard_neighbours(letter)
        possible = [k for k in wanted if (k in ("substitute", "insert") and near) or k == "delete"
                    or (k == "transpose" and following.isalpha() and following != letter)]
        kind = rng.choice(possible) if possible else None
        if kind == "transpose":
            out += [following, letter]
            i += 2
            continue
        if kind == "substitute":
            out.append(rng.choice(near))
        elif kind == "insert":
            out += [letter, rng.choice(near)]
        elif kind is None:  # no edit applies to this letter (kinds left only ones it cannot take)
            out.append(letter)
        i += 1
    return "".join(out)


def add_typos(texts: Iterable[str], rate: float, *, seed: int, kinds: Sequence[str] = KINDS) -> list[str]:
    """Every text with typos injected: per letter, one edit with probability ``rate``.

    Args:
        texts: the texts (queries); values that are not strings (None, NaN) come back unchanged.
        rate: probability that a letter starts an edit, 0 to 1; 0 leaves every text as it is.
        seed: seed of the edits; each text's generator is seeded by a hash of ``(seed, text)``.
        kinds: which edits may be drawn, some of ``substitute``, ``insert``, ``delete``, ``transpose``.

    Returns:
        The texts in their order, typo'd.

    Example:
        >>> add_typos(["wireless mouse", "", "12 V"], 0.2, seed=1)
    """
    _check(rate, kinds)
    return [misspell(text, rate, seed=seed, kinds=kinds) for text in texts]


def typo_copies(pairs: pd.DataFrame, *, rate: float, share: float, seed: int,
                first_id: int | str | None = None) -> pd.DataFrame:
    """Typo'd copies of a seeded draw of the rows: the rows to append to a training table.

    ``round(share * len(pairs))`` rows are drawn (seeded, without replacement); each gets a copy whose
    query is :func:`add_typos`'s, with ``origin`` ``augmented``, ``source_id`` the id of the row copied and
    a new ``id``; a drawn row whose query the typos leave unchanged (no letter edited) gets no copy. Every
    other column is the source row's.

    Args:
        pairs: the training pairs table (``id``, ``query``; the other columns are copied).
        rate: typo rate per letter (:func:`add_typos`).
        share: share of the rows drawn, 0 to 1.
        seed: seed of the draw and of the typos.
        first_id: the first new id (``qckit.data.first_new_id``); None: one past the table's own ids.

    Example:
        >>> copies = typo_copies(train, rate=0.1, share=0.2, seed=13)
        >>> train_augmented = pd.concat([train, copies], ignore_index=True)
    """
    _check(rate, KINDS)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share of rows to copy must be between 0 and 1, got {share}")
    n = int(round(share * len(pairs)))
    drawn = np.sort(np.random.default_rng(seed).choice(len(pairs), size=n, replace=False))
    rows = pairs.iloc[drawn]
    typoed = add_typos(rows["query"].tolist(), rate, seed=seed)
    changed = np.array([t != q for t, q in zip(typoed, rows["query"].tolist())], dtype=bool)
    copies = rows[changed].assign(query=[t for t, c in zip(typoed, changed) if c], origin=ORIGIN,
                                  source_id=rows["id"][changed].to_numpy())
    first = first_new_id([pairs], "typo") if first_id is None else first_id
    copies["id"] = new_ids(first, len(copies))
    dtypes: dict[str, Any] = id_dtypes(pd.Series(copies["id"].to_numpy()) if len(copies) else pairs["id"])
    return copies.astype(dtypes).reset_index(drop=True)
