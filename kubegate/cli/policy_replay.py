"""`kubegate policy replay`: what a policy change would have decided differently, request by request.

    kubegate policy replay AUDIT.jsonl... --policies NEW [--against OLD]
                           [-o table|json|markdown] [--show N] [--exit-code]

Every request of the audit logs is judged by NEW and by OLD (or, without --against, compared with
the decision the gateway recorded); the requests whose outcome (allow, approval, deny) flips are
grouped by the rule the flip is owed to, with counts, users and namespaces. `-o markdown` is the
summary a policy pull request's check posts as a comment (docs/examples/policy-replay.yml).
Exit 0 with a report; 1 when a policy set or a log cannot be read; with --exit-code, 3 when any
decision flips (as `git diff --exit-code` says "there are differences").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kubegate.cli.audit import _ordered

if TYPE_CHECKING:
    from kubegate.gateway.replay import Flip, Judge, Report

FLIPS_EXIT = 3
PolicyDirs = Callable[[str], "tuple[str | None, str | None]"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("logs", nargs="+", metavar="AUDIT.jsonl", help="audit logs (rotated files are put in order)")
    p.add_argument("--policies", required=True, metavar="NEW",
                   help="the policy set to judge with: a dir holding authz/ and gates/, or one of them")
    p.add_argument("--against", metavar="OLD", help="the policy set to compare with (default: what was recorded)")
    p.add_argument("-o", "--output", choices=("table", "json", "markdown"), default="table")
    p.add_argument("--show", type=int, default=5, metavar="N", help="requests shown per group (default 5)")
    p.add_argument("--exit-code", action="store_true", help=f"exit {FLIPS_EXIT} when any decision flips")


def _judge(directory: str, dirs: PolicyDirs) -> "tuple[Judge | None, list[str]]":
    from kubegate.gateway.authz import policy as authz_policy
    from kubegate.gateway.gates import policy as gate_policy
    from kubegate.gateway.replay import Judge

    authz_dir, gates_dir = dirs(directory)
    if authz_dir is None:
        return None, [f"{directory}: no authorization policy (model.conf, or authz/ holding it)"]
    ps = authz_policy.load(authz_dir)
    problems = list(ps.problems)
    gates = gate_policy.GatePolicy()
    if gates_dir is not None:
        gates, gate_problems = gate_policy.load(Path(gates_dir))
        problems += gate_problems
    if problems:
        return None, problems + [f"{directory} does not pass `kubegate policy check`"]
    try:
        return Judge(ps, gates.change, name=directory), []
    except authz_policy.PolicyError as e:
        return None, e.problems


def main(args: argparse.Namespace, dirs: PolicyDirs) -> int:
    from kubegate.gateway.replay import replay

    paths = _ordered([Path(p) for p in args.logs])
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"kubegate: no such file: {', '.join(missing)}", file=sys.stderr)
        return 1
    new, problems = _judge(args.policies, dirs)
    old, old_problems = _judge(args.against, dirs) if args.against else (None, [])
    problems += old_problems
    if new is None or problems or (args.against and old is None):
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s) in the policy sets", file=sys.stderr)
        return 1
    try:
        report = replay(paths, new, old)
    except (OSError, UnicodeDecodeError) as e:
        print(f"kubegate: cannot read the audit log: {e}", file=sys.stderr)
        return 1
    print({"json": _json, "markdown": _markdown}.get(args.output, _table)(report, args))
    return FLIPS_EXIT if args.exit_code and report.flips else 0


def _top(counts: Counter[str], n: int = 3) -> str:
    return ", ".join(f"{k or '(cluster)'} {v}" for k, v in counts.most_common(n)) + (" …" if len(counts) > n else "")


def _summary(report: "Report", new: str) -> str:
    against = "the decisions recorded" if report.baseline == "recorded" else report.baseline
    return (f"{len(report.flips)} of {report.requests} recorded requests would be decided differently "
            f"by {new} than by {against}")


def _rows(flips: "list[Flip]") -> tuple[Counter[str], Counter[str]]:
    return Counter(f.request.user for f in flips), Counter(f.request.info.namespace for f in flips)


def _table(report: "Report", args: argparse.Namespace) -> str:
    lines = [_summary(report, args.policies)]
    groups = report.groups()
    if groups:
        rows = [("RULE", "CHANGE", "REQUESTS", "USERS", "NAMESPACES")]
        for rule, change, flips in groups:
            users, namespaces = _rows(flips)
            rows.append((rule, change, str(len(flips)), _top(users), _top(namespaces)))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines += [""] + ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        for rule, change, flips in groups:
            lines.append(f"\n{rule} ({change}):")
            lines += [f"  {f.request.where}  {f.request.describe()}" for f in flips[:args.show]]
            if len(flips) > args.show:
                lines.append(f"  … and {len(flips) - args.show} more")
    lines += _notes(report)
    return "\n".join(lines)


def _notes(report: "Report") -> list[str]:
    lines = []
    if report.unreplayable:
        lines.append("\nnot replayed (the audit events lack what these rules read):")
        lines += [f"  rule {rule}: {n} request(s): {why}" for (rule, why), n in sorted(report.unreplayable.items())]
    if report.skipped:
        lines.append("\nskipped:")
        lines += [f"  {n} {why}" for why, n in sorted(report.skipped.items())]
    if report.baseline == "recorded" and len(report.revisions) > 1:
        lines.append(f"\nnote: the events were decided by {len(report.revisions)} policy revisions "
                     f"({_top(report.revisions)}); compare with --against for one baseline")
    return lines


def _markdown(report: "Report", args: argparse.Namespace) -> str:
    lines = ["### kubegate policy replay", "", f"**{_summary(report, args.policies)}.**"]
    groups = report.groups()
    if groups:
        lines += ["", "| Rule | Change | Requests | Users | Namespaces |", "|---|---|---:|---|---|"]
        for rule, change, flips in groups:
            users, namespaces = _rows(flips)
            lines.append(f"| `{rule}` | {change} | {len(flips)} | {_top(users)} | {_top(namespaces)} |")
        lines += ["", "<details><summary>Requests</summary>", ""]
        for rule, change, flips in groups:
            lines.append(f"**`{rule}`** ({change})")
            lines += [f"- `{f.request.describe()}` at {f.request.where.rsplit('/', 1)[-1]}" for f in flips[:args.show]]
            if len(flips) > args.show:
                lines.append(f"- … and {len(flips) - args.show} more")
            lines.append("")
        lines.append("</details>")
    notes = _notes(report)
    if notes:
        lines += ["", "```", *[n.lstrip("\n") for n in notes], "```"]
    return "\n".join(lines)


def _json(report: "Report", args: argparse.Namespace) -> str:
    from kubegate.gateway.replay import events_of

    return json.dumps({
        "policies": args.policies, "against": report.baseline, "requests": report.requests,
        "flipped": len(report.flips),
        "groups": [{"rule": rule, "change": change, "requests": len(flips),
                    "users": dict(_rows(flips)[0]), "namespaces": dict(_rows(flips)[1])}
                   for rule, change, flips in report.groups()],
        "flips": list(events_of(report.flips)),
        "notReplayed": [{"rule": rule, "why": why, "requests": n} for (rule, why), n in sorted(report.unreplayable.items())],
        "skipped": dict(report.skipped),
        "revisions": dict(report.revisions),
    }, indent=2)
