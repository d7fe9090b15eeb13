"""`kubegate audit verify FILE...`: is the audit log as the gateway wrote it?

Files are given oldest first (a rotated `audit.jsonl.<time>` before the live `audit.jsonl`);
globs are expanded and sorted that way by the shell or here. Exit 0 when the chain holds, 1 with
one line per problem (FILE:LINE: what happened to that line) otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubegate.audit import chain


def _ordered(paths: list[Path]) -> list[Path]:
    """Rotated files (FILE.<UTC time>) before the live FILE they came from."""
    def key(p: Path) -> tuple[str, int, str]:
        base, _, stamp = p.name.partition(".jsonl.")
        return (str(p.parent / base), 1 if not stamp else 0, stamp)
    return sorted(paths, key=key)


def verify(args: argparse.Namespace) -> int:
    paths = _ordered([Path(p) for p in args.files])
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"kubegate: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    problems = chain.verify(paths)
    live = paths[-1]
    problems += chain.check_head(live, live.with_name(live.name + ".head"))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {', '.join(str(p) for p in paths)}", file=sys.stderr)
        return 1
    lines = sum(1 for p in paths for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    print(f"OK: {lines} events in {len(paths)} file(s), chained without a break")
    return 0


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit log: verify its hash chain")
    acts = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = acts.add_parser("verify", help="check the hash chain of audit log files (oldest first); exit 1 on a break")
    v.add_argument("files", nargs="+", help="audit log files: rotated ones and the live one")
    v.set_defaults(handler=verify)
