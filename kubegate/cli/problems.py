"""Problem lines (`FILE:LINE: message`) in the forms CI reads: taken apart for JSON, or as GitHub
workflow annotations that show on the file and line of a pull request."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LOCATED = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+): (?P<message>.*)$", re.S)


def located(problem: str) -> dict[str, Any]:
    """A `FILE:LINE: message` problem, taken apart (file and line empty when it names no place)."""
    m = _LOCATED.match(problem)
    if m is None:
        return {"file": "", "line": 0, "message": problem}
    path = Path(m["file"])
    try:  # CI reporters link paths relative to the checkout, where the command runs
        path = path.resolve().relative_to(Path.cwd().resolve()) if path.is_absolute() else path
    except ValueError:
        pass
    return {"file": str(path), "line": int(m["line"]), "message": m["message"]}


def github_annotation(level: str, problem: str, title: str = "") -> str:
    """A GitHub Actions workflow command: the problem shows on its file and line in the pull request."""
    where = located(problem)
    message = where["message"].replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    props = [f"file={where['file']}", f"line={where['line']}"] if where["file"] else []
    props += [f"title={title}"] if title else []
    return f"::{level} {','.join(props)}::{message}" if props else f"::{level}::{message}"
