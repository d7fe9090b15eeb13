"""Label and field selectors, parsed the way kube-apiserver parses them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=|>|<)\s*(.*?)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class SelectorError(ValueError):
    pass


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside a parenthesised value set."""
    terms: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parenthesis in selector {text!r}")
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise SelectorError(f"unbalanced parenthesis in selector {text!r}")
    terms.append("".join(cur))
    return [t for t in (t.strip() for t in terms) if t]


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


Predicate = Callable[[dict[str, str]], bool]


@dataclass(frozen=True)
class LabelSelector:
    text: str
    predicates: tuple[Predicate, ...]

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(p(labels) for p in self.predicates)


def _requirement(term: str, text: str) -> Predicate:
    if m := _SET_RE.match(term):
        key, op = m.group(1), m.group(3)
        values = frozenset(_check_value(v.strip(), text) for v in m.group(4).split(",") if v.strip())
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _CMP_RE.match(term):
        key, op, raw = m.group(1), m.group(3), m.group(4)
        if op in (">", "<"):
            try:
                bound = int(raw)
            except ValueError:
                raise SelectorError(f"{op} needs an integer value in selector {text!r}") from None

            def compare(labels: dict[str, str]) -> bool:
                try:
                    n = int(labels[key])
                except (KeyError, ValueError):
                    return False
                return n > bound if op == ">" else n < bound

            return compare
        value = _check_value(raw, text)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS_RE.match(term):
        negate, key = m.group(1) == "!", m.group(2)
        return (lambda labels: key not in labels) if negate else (lambda labels: key in labels)
    raise SelectorError(f"unable to parse requirement {term!r} in selector {text!r}")


def parse_labels(text: str | None) -> LabelSelector | None:
    if not text or not text.strip():
        return None
    return LabelSelector(text, tuple(_requirement(t, text) for t in _split_terms(text)))


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string form of a dotted field path in an object ("" when absent), as selectors see it."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return ""
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


@dataclass(frozen=True)
class FieldSelector:
    text: str
    terms: tuple[tuple[str, bool, str], ...]  # (path, equal?, value)

    def matches(self, obj: dict[str, Any]) -> bool:
        return all((field_value(obj, p) == v) == eq for p, eq, v in self.terms)


def parse_fields(text: str | None) -> FieldSelector | None:
    if not text or not text.strip():
        return None
    terms = []
    for term in _split_terms(text):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not m:
            raise SelectorError(f"invalid field selector term {term!r}")
        terms.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return FieldSelector(text, tuple(terms))
