"""A team's own files onto the kit's fields: column names, graded or worded labels, a task for every row.

``data.columns`` maps the kit's names (``id``, ``task``, ``language``, ``query``, ``target``, ``label``) onto a
file's columns; ``target`` goes to ``category_path`` for QC rows and ``item_title`` for QI rows, the row's task
coming from its task column or, for files of one task, from ``data.task``. ``data.positive_if`` turns labels
into 0/1: a comparison (``">= 2.5"``, ``"> 0"``, ``"== 3"``) for numbers, or a list of values that mean
relevant (``[yes, relevant, 1]``) for words; every other value is 0. YAML reads ``yes``, ``on`` and ``true``
as the boolean true, so a true in the list stands for any of those words (and ``false`` for no/off/false).

Example:
    >>> layout = Layout.from_params({"query": "search_term", "target": "product_title", "label": "relevance"},
    ...                             positive_if=">= 2.5", task="QI")
    >>> layout.apply({"id": 1, "search_term": "angle bracket", "product_title": "Simpson Strong-Tie",
    ...               "relevance": "3"})
    ({'id': 1, 'origin_query': 'angle bracket', 'label': 1, 'task': 'QI', 'item_title': 'Simpson Strong-Tie'}, [])
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KIT_FIELDS = ("id", "task", "language", "query", "target", "label")
# the kit's name -> the official field it becomes (``target`` depends on the row's task)
OFFICIAL_NAME = {"id": "id", "task": "task", "language": "language", "query": "origin_query", "label": "label"}
TARGETS = {"QC": "category_path", "QI": "item_title"}
_COMPARE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}
_YAML_WORDS = {True: ("true", "yes", "on"), False: ("false", "no", "off")}


class PositiveRuleError(ValueError):
    """``data.positive_if`` cannot be read."""


def _word(value: Any) -> str:
    """A label value as a word to compare: case-folded text, integral numbers without a fraction."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().casefold()


@dataclass(frozen=True)
class PositiveRule:
    """``positive_if`` parsed: a comparison with a number, or the set of words meaning relevant."""

    spec: str
    compare: tuple[str, float] | None = None
    words: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, spec: str | Sequence[Any]) -> PositiveRule:
        if isinstance(spec, str):
            found = _COMPARE.fullmatch(spec)
            if not found:
                raise PositiveRuleError(f"{spec!r}: expected a comparison such as '>= 2.5' (>=, >, <=, <, ==, !=) "
                                        "or a list of values meaning relevant such as [yes, relevant, 1]")
            return cls(spec=spec.strip(), compare=(found.group(1), float(found.group(2))))
        values = list(spec)
        if not values:
            raise PositiveRuleError("an empty list: name the values that mean relevant, e.g. [yes, relevant, 1]")
        words: set[str] = set()
        for value in values:
            if isinstance(value, bool):
                words.update(_YAML_WORDS[value])
            elif isinstance(value, (str, int, float)) and _word(value):
                words.add(_word(value))
            else:
                raise PositiveRuleError(f"{value!r} in the list: expected words or numbers")
        return cls(spec="[" + ", ".join(map(str, values)) + "]", words=frozenset(words))

    def __call__(self, value: Any) -> tuple[int | None, str | None]:
        """(0 or 1, None), (None, None) for a missing label, or (None, error message)."""
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            return None, None
        if self.compare is None:
            if isinstance(value, (dict, list)):
                return None, f"expected a word or a number for data.positive_if {self.spec}, got {value!r}"
            return int(_word(value) in self.words), None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None, f"expected a number for data.positive_if '{self.spec}', got {value!r}"
        try:
            number = float(value)
        except ValueError:
            return None, f"expected a number for data.positive_if '{self.spec}', got {value!r}"
        if math.isnan(number):
            return None, f"expected a number for data.positive_if '{self.spec}', got {value!r}"
        op, bound = self.compare
        return int(_OPERATORS[op](number, bound)), None


@dataclass(frozen=True)
class Layout:
    """How one project's files name the kit's fields. The default layout is the official format."""

    columns: tuple[tuple[str, str], ...] = ()  # (kit name, file column)
    positive_if: PositiveRule | None = None
    task: str | None = None  # the task of rows that have none
    detect_languages: tuple[str, ...] | None = None  # candidates of the language identifier
    source: dict = field(default_factory=dict, compare=False, hash=False)  # the settings, for messages

    @classmethod
    def from_params(cls, columns: Mapping[str, str] | None = None, *, positive_if: Any = None,
                    task: str | None = None, detect_languages: Sequence[str] | None = None) -> Layout:
        columns = dict(columns or {})
        unknown = sorted(set(columns) - set(KIT_FIELDS))
        if unknown:
            raise ValueError(f"data.columns: unknown field(s) {', '.join(unknown)}; the kit's fields are "
                             f"{', '.join(KIT_FIELDS)}")
        seen: dict[str, str] = {}
        for name, column in columns.items():
            if not isinstance(column, str) or not column:
                raise ValueError(f"data.columns.{name}: expected a column name, got {column!r}")
            if column in seen:
                raise ValueError(f"data.columns: column {column!r} is given for both {seen[column]} and {name}")
            seen[column] = name
        rule = None if positive_if is None else PositiveRule.parse(positive_if)
        return cls(columns=tuple(columns.items()), positive_if=rule, task=task,
                   detect_languages=tuple(detect_languages) if detect_languages else None)

    @property
    def custom(self) -> bool:
        """Whether rows need translating (columns renamed, labels mapped or a task given) before the checks."""
        return bool(self.columns) or self.positive_if is not None or self.task is not None

    def file_name(self, kit_or_official: str) -> str:
        """The file's own name of a field, as errors should say it (``origin_query`` -> ``search_term``)."""
        for name, column in self.columns:
            if kit_or_official in (name, OFFICIAL_NAME.get(name), *(TARGETS.values() if name == "target" else ())):
                return column
        return kit_or_official

    def clashes(self, names: Sequence[str]) -> list[tuple[str, str]]:
        """(column, message) for a file whose columns both name a field and hold its mapped column."""
        out = []
        present = set(names)
        for name, column in self.columns:
            officials = TARGETS.values() if name == "target" else (OFFICIAL_NAME[name],)
            for official in officials:
                if official in present and official != column and column in present:
                    out.append((official, f"column {official!r} and column {column!r} (data.columns.{name}) both "
                                          f"give the {name}; drop one of them or map the other"))
        return out

    def missing(self, names: Sequence[str]) -> list[tuple[str, str]]:
        """(column, message) for mapped columns a file with a header lacks."""
        present = set(names)
        return [(column, f"no column {column!r} (data.columns.{name} names it); the file has: {', '.join(names)}")
                for name, column in self.columns if column not in present and name in ("query", "target")]

    def apply(self, obj: dict) -> tuple[dict, list[tuple[str | None, str]]]:
        """One row in official field names, and the problems (field as the file names it, message)."""
        out = dict(obj)
        problems: list[tuple[str | None, str]] = []
        target = _MISSING
        for name, column in self.columns:
            if column not in out:
                continue
            value = out.pop(column)
            if name == "target":
                target = value
            else:
                out[OFFICIAL_NAME[name]] = value
        if self.positive_if is not None and "label" in out:
            label, problem = self.positive_if(out["label"])
            if problem:
                problems.append((self.file_name("label"), problem))
            out["label"] = label
        if out.get("task") is None and self.task is not None:
            out["task"] = self.task
        if target is not _MISSING:
            task = out.get("task")
            if task in TARGETS:
                out[TARGETS[task]] = target
            elif task is None:
                problems.append(("task", f"missing: the row's {self.file_name('target')!r} is a category path "
                                         "(QC) or an item title (QI); map a task column (data.columns.task) or set "
                                         "data.task"))
        return out, problems


_MISSING = object()
OFFICIAL = Layout()
