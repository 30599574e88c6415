"""Language codes of the pairs table: which codes are familiar, and guessing a row's language from its query.

Any code is accepted as a language: the official files' thirteen (``qckit.LANGUAGES``, with ``vn`` for
Vietnamese), any valid BCP-47 tag or ISO 639 code (``pt-BR``, ``vi``, ``zh-Hant``, ``fil``; checked by
``langcodes`` against the IANA registry), and anything else with a warning in the validation summary: a
misspelt code (``english``, ``jp``) silently becomes a language of its own otherwise.

A file without a language column gets each row's language from its query (py3langid, restricted to a set of
candidates: on two-word queries the full set of 97 languages gives Galician, Latin and Catalan for Spanish
queries). The guess is written in the kit's spelling (``vn``, not ``vi``) so that it meets the official
files' rows.

Example:
    >>> familiar_language("pt-BR"), familiar_language("jp")
    (True, False)
    >>> detect_languages(["zapatillas running mujer", "running shoes"], ["en", "es", "fr"])
    ['es', 'en']
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import langcodes

from qckit import LANGUAGES
from qckit.translate import LANGUAGE_CODES, iso639_1


@lru_cache(maxsize=4096)
def familiar_language(code: str) -> bool:
    """Whether ``code`` is one of the kit's codes or a valid BCP-47 tag / ISO 639 code."""
    return code in LANGUAGES or langcodes.tag_is_valid(code)


def unfamiliar_languages(codes: Sequence[str]) -> list[str]:
    """The distinct codes among ``codes`` that are neither the kit's nor valid language tags, sorted."""
    return sorted({c for c in codes if not familiar_language(c)})


@lru_cache(maxsize=8)
def _identifier(candidates: tuple[str, ...]) -> Any:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as err:
        raise ImportError("a file without a language column needs py3langid to detect each row's language: "
                          "pip install 'qckit[ml]' (or add a language column)") from err
    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)
    known = set(ident.labels)
    usable = sorted({iso639_1(c) for c in candidates} & known)
    if not usable:
        raise ValueError(f"none of the languages {', '.join(candidates)} is known to the language identifier "
                         f"(it knows {', '.join(sorted(known))})")
    ident.set_languages(usable)
    return ident


def detect_languages(texts: Sequence[str], candidates: Sequence[str] = LANGUAGES) -> list[str]:
    """The most likely language of each text among ``candidates`` (kit codes or ISO 639-1), in kit spelling.

    Raises ImportError when py3langid is missing, ValueError when no candidate is known to it.
    """
    ident = _identifier(tuple(dict.fromkeys(candidates)))
    to_kit = {iso: code for code, (iso, *_) in LANGUAGE_CODES.items() if code in candidates or iso not in candidates}
    guesses = {}
    out = []
    for text in texts:
        if text not in guesses:
            guesses[text] = ident.classify(str(text))[0]
        out.append(to_kit.get(guesses[text], guesses[text]))
    return out
