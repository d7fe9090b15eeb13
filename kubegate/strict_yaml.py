"""kubegate's own files (settings, policies, their test cases, the audit policy) read as YAML that
cannot say two things at once, with the line of every mapping kept for problem reports.

ruamel.yaml is the parser: it refuses a key given twice in one mapping (a second `outcome:` under
a rule would otherwise silently replace the first) and marks every error with its line. Its
round-trip types are turned into plain Python here — mappings become `Located` dicts that remember
their first line — so nothing downstream depends on the parser. Files are YAML 1.2: `yes`, `on`
and `no` are strings, not booleans; only `true` and `false` are. Explicit tags are refused: a
policy file holds data, not objects.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError


class Located(dict[str, Any]):
    """A YAML mapping that remembers the line it starts on (1-based), and each key's."""

    line: int = 0
    key_lines: dict[str, int] | None = None

    def line_of(self, key: str) -> int:
        return (self.key_lines or {}).get(key, self.line)


class Problem(Exception):
    def __init__(self, line: int | None, message: str, *, unreadable: bool = False) -> None:
        super().__init__(message)
        self.line, self.message, self.unreadable = line, message, unreadable

    def where(self, path: Path | str) -> str:
        return f"{path}:{self.line}" if self.line else str(path)

    @property
    def what(self) -> str:
        return self.message if self.unreadable else f"not valid YAML: {self.message}"

    def report(self) -> str:
        """The problem for a report that already names the file."""
        return (f"line {self.line}: " if self.line else "") + self.what


def read(path: Path) -> Any:
    """The document in PATH; `Problem` when it cannot be read or is not valid YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise Problem(None, f"cannot read: {e.strerror}", unreadable=True) from None
    except UnicodeDecodeError:
        raise Problem(None, "not UTF-8 text", unreadable=True) from None
    return loads(text)


def _tag(node: Any) -> str | None:
    tag = getattr(node, "tag", None)
    return getattr(tag, "value", None) if tag is not None else None


def _plain(node: Any) -> Any:
    if (tag := _tag(node)) is not None:
        raise Problem(None, f"explicit tag {tag} is not allowed")
    if isinstance(node, CommentedMap):
        out = Located()
        out.key_lines = {}
        for key, value in node.items():
            out.key_lines[str(key)] = node.lc.key(key)[0] + 1
            try:
                out[str(key)] = _plain(value)
            except Problem as e:
                if e.line is None:  # the innermost mapping knows where its key is
                    e.line = node.lc.key(key)[0] + 1
                raise
        out.line = node.lc.line + 1
        return out
    if isinstance(node, CommentedSeq):
        out_list = []
        for i, value in enumerate(node):
            try:
                out_list.append(_plain(value))
            except Problem as e:
                if e.line is None:
                    e.line = node.lc.item(i)[0] + 1
                raise
        return out_list
    if isinstance(node, bool) or node is None:
        return node
    if type(node).__name__ == "ScalarBoolean":  # an int subclass in ruamel: made a real bool
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, dt.datetime):
        return dt.datetime(node.year, node.month, node.day, node.hour, node.minute, node.second, node.microsecond,
                           node.tzinfo)
    if isinstance(node, dt.date):
        return dt.date(node.year, node.month, node.day)
    if isinstance(node, str):
        return str(node)
    raise Problem(None, f"a {type(node).__name__} value is not allowed here (only mappings, lists, strings, numbers, "
                        "booleans, null, dates and times)")


def loads(text: str) -> Any:
    """The document in `text`, as plain Python; `Problem` with its line when it is not one."""
    try:
        data = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(str(e.problem or e.context or "not valid YAML").split())
        raise Problem(mark.line + 1 if mark is not None else None, problem) from None
    except YAMLError as e:
        raise Problem(None, " ".join(str(e).split())) from None
    return _plain(data)


def load(path: Path) -> tuple[Any, str | None]:
    """(data, None), or (None, "FILE:LINE: what is wrong")."""
    try:
        return read(path), None
    except Problem as e:
        return None, f"{e.where(path)}: {e.what}"
