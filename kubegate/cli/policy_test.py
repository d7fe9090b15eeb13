"""`kubegate policy test`: the policy's test cases, run like `opa test` / `kyverno test`.

    kubegate policy test [DIR] [--run REGEX] [--now TIME] [-o table|json|junit]
                         [--coverage] [--min-coverage PERCENT]

Cases live in DIR/tests/*.yaml (authz and gates alike); a failure is named by the FILE:LINE of its
case. A gate case's time comes from its `at:`, else its file's `now:`, else `--now`; a gate case
with none of them is a problem, not a run on the wall clock (freeze windows would make it pass on
weekdays only). A policy directory without test cases is a warning, for authz and gates alike.
Coverage: the rules (authz ids, gate rule and freeze-window names) that decide no case.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from kubegate.cli.problems import github_annotation, located


@dataclass
class Result:
    suite: str  # the policy directory
    where: str  # FILE:LINE of the case
    name: str
    request: str
    expect: str
    got: str
    decided_by: str
    failure: str

    @property
    def passed(self) -> bool:
        return not self.failure

    @property
    def location(self) -> str:
        """FILE:LINE of the case, the file as a path (its suite's tests/ directory)."""
        return str(Path(self.suite) / "tests" / self.where)


@dataclass
class Run:
    results: list[Result] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    uncovered: dict[str, list[str]] = field(default_factory=dict)  # suite -> rule ids/names no case decides
    rule_count: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        if not self.rule_count:
            return 100.0
        return 100.0 * (self.rule_count - sum(len(v) for v in self.uncovered.values())) / self.rule_count


C = TypeVar("C", bound=Any)


def _selected(cases: list[C], directory: str, args: argparse.Namespace, run: Run) -> list[C]:
    """The cases --run selects; none is a warning, not a failure."""
    chosen = [c for c in cases if args.run is None or args.run.search(c.name)]
    if not chosen:
        run.warnings.append(f"{directory}: no test cases" + (" match --run" if args.run else ""))
    return chosen


def _authz(directory: str, args: argparse.Namespace, run: Run) -> list[str]:
    from kubegate.gateway.authz import cases as authz_cases
    from kubegate.gateway.authz import policy

    ps = policy.load(directory)
    if ps.problems:
        return ps.problems + ["the policy does not pass `kubegate policy check`"]
    cases, problems = authz_cases.load_cases(Path(directory))
    if problems:
        return problems
    cases = _selected(cases, directory, args, run)
    if not cases:
        return []
    outcomes = authz_cases.run(ps, cases)
    run.tables.append(f"{directory}:\n" + authz_cases.report(outcomes))
    for o in outcomes:
        got = ("allow" if o.decision.allowed else "deny") if o.decision else "-"
        rule = o.decision.rule.id if o.decision and o.decision.rule else "none"
        run.results.append(Result(directory, o.case.source, o.case.name, authz_cases.describe(o.case),
                                  o.case.expect, got, rule, o.failure))
    decided = {o.decision.rule.id for o in outcomes if o.decision and o.decision.rule}
    run.rule_count += len(ps.rules)
    run.uncovered[directory] = [f"{r.id} ({r.source})" for r in ps.rules if r.id not in decided]
    return []


def _gates(directory: str, args: argparse.Namespace, run: Run) -> list[str]:
    from kubegate.gateway.gates import cases as gates_cases
    from kubegate.gateway.gates import policy as gate_policy

    gates, problems = gate_policy.load(Path(directory))
    if problems:
        return problems + ["the policy does not pass `kubegate policy check`"]
    cases, problems = gates_cases.load_cases(Path(directory))
    if problems:
        return problems
    cases = _selected(cases, directory, args, run)
    if not cases:
        return []
    timeless = [c.source for c in cases if "at" not in c.raw and args.now is None]
    if timeless:
        return [f"{where}: no time for this case: give it `at:`, its file a `now:`, or run with --now"
                for where in timeless]
    outcomes = gates_cases.run(gates.change, cases, now=args.now, rollouts=gates.rollouts)
    run.tables.append(f"{directory}:\n" + gates_cases.report(outcomes))
    for o in outcomes:
        r = o.case.raw
        run.results.append(Result(directory, o.case.source, o.case.name, gates_cases.describe(r),
                                  str(r["expect"]), o.got, o.by or "none", o.failure))
    decided = {name.strip() for o in outcomes for name in o.by.split(",") if name.strip()}
    names = [f"rule {r.id}" for r in gates.change.rules] + [f"freeze {w.name}" for w in gates.change.freeze]
    run.rule_count += len(names)
    run.uncovered[directory] = [n for n in names if n.split(" ", 1)[1] not in decided]
    return []


def _junit(run: Run) -> str:
    root = ET.Element("testsuites", tests=str(len(run.results)),
                      failures=str(sum(not r.passed for r in run.results)))
    for suite in dict.fromkeys(r.suite for r in run.results):
        mine = [r for r in run.results if r.suite == suite]
        element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(mine)),
                                failures=str(sum(not r.passed for r in mine)))
        for r in mine:
            # file and line apart, the file relative to where it runs (the checkout): CI reporters link them.
            where = located(f"{r.location}: x")
            case = ET.SubElement(element, "testcase", classname=suite, name=r.name, file=where["file"] or r.where,
                                 line=str(where["line"]))
            if not r.passed:
                ET.SubElement(case, "failure", message=r.failure).text = f"{r.where}: {r.request}: {r.failure}"
    return ET.tostring(root, encoding="unicode")


def _json(run: Run, with_coverage: bool) -> str:
    out: dict[str, Any] = {
        "passed": sum(r.passed for r in run.results), "failed": sum(not r.passed for r in run.results),
        "cases": [{"suite": r.suite, "case": r.where, "name": r.name, "request": r.request, "expect": r.expect,
                   "got": r.got, "decidedBy": r.decided_by, "passed": r.passed, "failure": r.failure or None}
                  for r in run.results],
        "warnings": run.warnings,
    }
    if with_coverage:
        out["coverage"] = {"percent": round(run.coverage, 1), "rules": run.rule_count, "uncovered": run.uncovered}
    return json.dumps(out, indent=2)


def _time(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (2026-12-24T12:00:00+00:00)") from None


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default="policies",
                   help="a policy directory (authz or gates), or one holding authz/ and gates/ (default: policies)")
    p.add_argument("--run", type=_regex, help="only the cases whose name matches this regular expression")
    p.add_argument("--now", type=_time, help="the time of gate cases that give none (ISO 8601)")
    p.add_argument("-o", "--output", choices=("table", "json", "junit", "github"), default="table",
                   help="table; json; junit (file and line per case); github: an annotation on each failing case")
    p.add_argument("--coverage", action="store_true", help="list the rules no case decides")
    p.add_argument("--min-coverage", type=float, default=0.0, metavar="PERCENT",
                   help="fail when fewer rules than this are decided by some case (implies --coverage)")


def main(args: argparse.Namespace, dirs: tuple[str | None, str | None]) -> int:
    authz_dir, gates_dir = dirs
    if authz_dir is None and gates_dir is None:
        print(f"kubegate: {args.dir} holds no policy (model.conf, gate files, or authz/ and gates/)", file=sys.stderr)
        return 1
    run = Run()
    problems = (_authz(authz_dir, args, run) if authz_dir else []) + (_gates(gates_dir, args, run) if gates_dir else [])
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    with_coverage = args.coverage or args.min_coverage > 0
    if args.output == "json":
        print(_json(run, with_coverage))
    elif args.output == "junit":
        print(_junit(run))
    elif args.output == "github":
        for r in run.results:
            if not r.passed:
                print(github_annotation("error", f"{r.location}: {r.request}: {r.failure}",
                                        f"kubegate policy test: {r.name}"))
        print(f"{sum(r.passed for r in run.results)} passed, {sum(not r.passed for r in run.results)} failed")
    else:
        print("\n\n".join(run.tables))
        if with_coverage:
            print(f"\ncoverage: {run.coverage:.1f}% of {run.rule_count} rules decide some case")
            for suite, names in run.uncovered.items():
                for name in names:
                    print(f"  not covered: {suite}: {name}")
    failed = any(not r.passed for r in run.results)
    if with_coverage and run.coverage < args.min_coverage:
        print(f"coverage {run.coverage:.1f}% is below --min-coverage {args.min_coverage:g}%", file=sys.stderr)
        return 1
    return 1 if failed else 0
