"""Prompt templates and label words for the yes/no head, and pair texts for the classifier head.

The paper fine-tunes a causal LM on an Alpaca-style prompt whose answer is "yes" or "no" and scores
p(yes) = softmax over the two label logits at the answer position. A prompt is split into a *prefix*
that every row of a task shares (preamble and instruction) and a row-specific *suffix*: the scorer
computes the prefix once and reuses its key/value cache across a batch.

Example:
    >>> from qckit.prompts import build_prompt
    >>> p = build_prompt("QC", "zapatos mujer", "shoes,women's shoes,pumps", language="es")
    >>> print(p.prefix + p.suffix)  # doctest: +ELLIPSIS
    Below is an instruction ...
"""
from __future__ import annotations

from dataclasses import dataclass

from qckit.data import parse_category_path

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
)
INSTRUCTIONS = {
    "QC": "Decide whether the product category is relevant to the e-commerce search query. Answer yes or no.",
    "QI": "Decide whether the product title is relevant to the e-commerce search query. Answer yes or no.",
}
LABEL_WORDS = (" no", " yes")  # index = label; leading space: the answer follows "### Response:"
LANGUAGE_NAMES = {
    "en": "English", "fr": "French", "es": "Spanish", "ko": "Korean", "pt": "Portuguese", "ja": "Japanese",
    "de": "German", "it": "Italian", "pl": "Polish", "ar": "Arabic", "th": "Thai", "vn": "Vietnamese",
    "id": "Indonesian",
}


@dataclass(frozen=True)
class Prompt:
    prefix: str  # shared by every row of the task
    head: str  # the row's query (and language), ending with the target's field name
    target: str  # " " + the category levels or item title
    tail: str = "\n\n### Response:"  # where the answer word goes

    @property
    def suffix(self) -> str:
        return self.head + self.target + self.tail

    @property
    def text(self) -> str:
        return self.prefix + self.suffix


def format_target(task: str, target: str, *, category_style: str = "levels") -> str:
    """The category path as levels joined with ' > ' (or as given), or the item title."""
    if task == "QC" and category_style == "levels":
        return " > ".join(parse_category_path(target))
    return target


def task_prefix(task: str) -> str:
    if task not in INSTRUCTIONS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(INSTRUCTIONS)}")
    return f"{ALPACA_PREAMBLE}### Instruction:\n{INSTRUCTIONS[task]}\n\n### Input:\n"


def build_prompt(
    task: str, query: str, target: str, *, language: str | None = None,
    language_tag: bool = True, category_style: str = "levels",
) -> Prompt:
    """The Alpaca prompt of one pair, split into the shared prefix and the row suffix."""
    field = "Category" if task == "QC" else "Product title"
    lines = [f"Query: {query}"]
    if language_tag and language:
        lines.append(f"Language: {LANGUAGE_NAMES.get(language, language)}")
    lines.append(f"{field}:")
    return Prompt(task_prefix(task), "\n".join(lines), " " + format_target(task, target, category_style=category_style))


def pair_texts(
    task: str, query: str, target: str, *, language: str | None = None, language_tag: bool = False,
    category_style: str = "levels",
) -> tuple[str, str]:
    """Text pair for a cross-encoder (classifier head): (query side, target side)."""
    left = f"{language}: {query}" if language_tag and language else query
    return left, format_target(task, target, category_style=category_style)


def label_token_ids(tokenizer, words: tuple[str, str] = LABEL_WORDS) -> tuple[int, int]:
    """Token ids of the (no, yes) label words; each must be exactly one token.

    Raises:
        ValueError: naming the words and the tokens they split into.
    """
    ids = []
    problems = []
    for word in words:
        toks = tokenizer.encode(word, add_special_tokens=False)
        if len(toks) != 1:
            pieces = tokenizer.convert_ids_to_tokens(toks)
            problems.append(f"{word!r} -> {pieces}")
        else:
            ids.append(toks[0])
    if problems:
        raise ValueError(
            "label words must each be a single token for this tokenizer; got " + "; ".join(problems)
            + ". Choose other label words (e.g. without the leading space) in the training parameters."
        )
    if ids[0] == ids[1]:
        raise ValueError(f"label words {words!r} map to the same token id {ids[0]}")
    return ids[0], ids[1]
