"""`kubegate policy test`: policy test cases kept beside the policies, run like unit tests.

A test file (`tests/*.yaml` in the policy directory) lists cases:

    cases:
      - name: viewers read pods
        user: vic
        groups: [kubegate:viewers]
        cluster: hz-1
        verb: get
        resource: pods            # resource[.group][/subresource], or a URL path such as /version
        namespace: shop           # omit for cluster-scoped objects
        name: web-0               # optional
        expect: allow             # or deny
        rule: authz/roles.csv:14  # optional: the rule that must decide (none: no rule allows it)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from .authorizer import Authorizer, Decision, request_object
from .policy import PolicySet
from ..request.info import RequestInfo

_KEYS = {"name", "user", "groups", "cluster", "verb", "resource", "namespace", "object", "expect", "rule"}


@dataclass
class Case:
    source: str
    name: str
    user: str
    groups: list[str]
    cluster: str
    info: RequestInfo
    expect: str
    rule: str | None


@dataclass
class Outcome:
    case: Case
    decision: Decision | None
    failure: str  # "" when it passed

    @property
    def passed(self) -> bool:
        return not self.failure


def _info(raw: dict[str, Any]) -> RequestInfo:
    resource = str(raw["resource"])
    verb = str(raw["verb"])
    if resource.startswith("/"):
        return RequestInfo(path=resource, verb=verb, is_resource=False)
    main, _, sub = resource.partition("/")
    res, _, group = main.partition(".")
    return RequestInfo(path="", verb=verb, is_resource=True, api_group=group, namespace=str(raw.get("namespace", "")),
                       resource=res, subresource=sub, name=str(raw.get("object", "")))


def read_case_files(directory: Path, keys: set[str], required: set[str],
                    expects: tuple[str, ...]) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(where, case) for every well-formed case in DIR/tests/*.yaml, and what is wrong with the rest."""
    cases: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    for path in sorted((directory / "tests").glob("*.y*ml")):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            problems.append(f"{path}: not valid YAML: {e}")
            continue
        for i, raw in enumerate(doc.get("cases") or []):
            where = f"{path.name}[{i}]"
            if not isinstance(raw, dict):
                problems.append(f"{where}: a case must be a mapping")
                continue
            wrong = [f"unknown keys {sorted(set(raw) - keys)}"] if set(raw) - keys else []
            wrong += [f"missing {sorted(required - set(raw))}"] if required - set(raw) else []
            wrong += [f"expect must be one of {', '.join(expects)}"] if raw.get("expect") not in expects else []
            if wrong:
                problems.append(f"{where}: {'; '.join(wrong)}")
            else:
                cases.append((where, raw))
    return cases, problems


REQUIRED = {"name", "user", "cluster", "verb", "resource", "expect"}


def load_cases(directory: Path) -> tuple[list[Case], list[str]]:
    found, problems = read_case_files(directory, _KEYS, REQUIRED, ("allow", "deny"))
    cases = [Case(where, str(raw["name"]), str(raw["user"]), [str(g) for g in raw.get("groups") or []],
                  str(raw["cluster"]), _info(raw), str(raw["expect"]), str(raw["rule"]) if "rule" in raw else None)
             for where, raw in found]
    return cases, problems


def run(ps: PolicySet, cases: list[Case]) -> list[Outcome]:
    authorizer = Authorizer(ps)
    outcomes = []
    for case in cases:
        decision = authorizer.decide_for(case.user, case.groups, case.cluster, case.info)
        got = "allow" if decision.allowed else "deny"
        failure = ""
        if got != case.expect:
            failure = f"expected {case.expect}, got {got} ({decision.reason})"
        elif case.rule is not None:
            actual = str(decision.rule.source) if decision.rule else "none"
            if actual != case.rule:
                failure = f"expected the decision from {case.rule}, got it from {actual}"
        outcomes.append(Outcome(case, decision, failure))
    return outcomes


def _request(case: Case) -> str:
    info = case.info
    target = request_object(info)
    where = f"{case.cluster}:{info.namespace}" if info.namespace else case.cluster
    return f"{case.user} {info.verb} {target} @{where}"


def table(rows: Sequence[tuple[str, ...]], failures: list[tuple[str, str, str]]) -> str:
    """A kyverno-test-like table, then each failure (where, name, why), then the tally."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for where, name, why in failures:
        lines.append(f"\nFAIL {where} {name}:\n  {why}")
    lines.append(f"\n{len(rows) - 1 - len(failures)} passed, {len(failures)} failed")
    return "\n".join(lines)


def report(outcomes: list[Outcome]) -> str:
    rows = [("#", "CASE", "REQUEST", "EXPECT", "GOT", "RESULT")]
    for i, o in enumerate(outcomes, 1):
        got = ("allow" if o.decision.allowed else "deny") if o.decision else "-"
        rows.append((str(i), o.case.name, _request(o.case), o.case.expect, got, "Pass" if o.passed else "Fail"))
    return table(rows, [(o.case.source, o.case.name, o.failure) for o in outcomes if not o.passed])
