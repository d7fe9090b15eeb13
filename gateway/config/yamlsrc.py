"""YAML policy files read with their line numbers (`kubegate.strict_yaml`), so every problem can say file:line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kubegate import strict_yaml
from kubegate.strict_yaml import Located

__all__ = ["Located", "load", "where", "Reader", "duration"]


def load(path: Path) -> tuple[Any, str | None]:
    """(data, None), or (None, "file:line: what is wrong"): duplicate keys and tags included."""
    return strict_yaml.load(path)


def where(path: Path, node: Any) -> str:
    return f"{path}:{node.line}" if isinstance(node, Located) else str(path)


_IDENT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class Reader:
    """Collects every problem of one policy file, each with its file:line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def problem(self, node: Any, message: str) -> None:
        self.problems.append(f"{where(self.path, node)}: {message}")

    def keys(self, node: Any, allowed: set[str], what: str) -> bool:
        """Whether `node` is a mapping; records each key it has that is not `allowed`."""
        if not isinstance(node, dict):
            self.problem(node, f"{what} must be a mapping")
            return False
        for key in node:
            if key not in allowed:
                self.problem(node, f"{what}: unknown key {key!r} (known: {', '.join(sorted(allowed))})")
        return True

    def ident(self, node: dict[str, Any], key: str, what: str, fallback: str) -> str:
        """A required name (DNS label: lower-case letters, digits, '-'), or `fallback` after a problem."""
        value = node.get(key)
        if not isinstance(value, str) or not _IDENT.match(value):
            self.problem(node, f"{what}.{key} is required: lower-case letters, digits and '-'")
            return fallback
        return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: Any) -> float | None:
    """Seconds from 30, "30s", "5m", "1h", "7d" or "1h30m"; None if it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str) or not value:
        return None
    total, number = 0.0, ""
    for ch in value.strip():
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in DURATION_UNITS and number:
            try:
                total += float(number) * DURATION_UNITS[ch]
            except ValueError:
                return None
            number = ""
        else:
            return None
    return total if not number else None
