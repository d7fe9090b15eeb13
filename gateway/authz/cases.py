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
        rule: viewers-read        # optional: the id of the rule that must decide (none: no rule allows it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from kubegate import strict_yaml

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
    """(where, case) for every well-formed case in DIR/tests/*.yaml — where is FILE:LINE of the
    case — and what is wrong with the rest. A file's top-level `now:` is the default `at:` of its
    cases, so that none depends on the wall clock."""
    cases: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    for path in sorted((directory / "tests").glob("*.y*ml")):
        doc, error = strict_yaml.load(path)
        if error is not None:
            problems.append(error)
            continue
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            problems.append(f"{path}: a test file is a mapping with `cases:`")
            continue
        listed = doc.get("cases") or []
        if not isinstance(listed, list):
            problems.append(f"{path}: `cases:` must be a list")
            continue
        for i, raw in enumerate(listed):
            where = f"{path.name}:{raw.line}" if isinstance(raw, strict_yaml.Located) else f"{path.name}[{i}]"
            if not isinstance(raw, dict):
                problems.append(f"{where}: a case must be a mapping")
                continue
            if "now" in doc and "at" in keys and "at" not in raw:
                raw = {**raw, "at": doc["now"]}
            wrong = [f"unknown keys {sorted(set(raw) - keys)}"] if set(raw) - keys else []
            wrong += [f"missing {sorted(required - set(raw))}"] if required - set(raw) else []
            wrong += [f"expect must be one of {', '.join(expects)}"] if raw.get("expect") not in expects else []
            if wrong:
                problems.append(f"{where}: {'; '.join(wrong)}")
            else:
                cases.append((where, raw))
    return cases, problems


REQUIRED = {"name", "user", "cluster", "verb", "resource", "expect"}


_LINE_REF = re.compile(r"\.csv:\d+$")


def load_cases(directory: Path) -> tuple[list[Case], list[str]]:
    found, problems = read_case_files(directory, _KEYS, REQUIRED, ("allow", "deny"))
    for where, raw in list(found):
        if _LINE_REF.search(str(raw.get("rule", ""))):
            problems.append(f"{where}: rule {raw['rule']!r} names a line; name the rule by its id (the 8th field "
                            "of its p line), so that comments and reordering do not break the case")
            found.remove((where, raw))
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
            actual = decision.rule.id if decision.rule else "none"
            if actual != case.rule:
                failure = f"expected the decision from rule {case.rule}, got it from {actual}" + \
                    (f" ({decision.rule.source})" if decision.rule else "")
        outcomes.append(Outcome(case, decision, failure))
    return outcomes


def describe(case: Case) -> str:
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
        rows.append((str(i), o.case.name, describe(o.case), o.case.expect, got, "Pass" if o.passed else "Fail"))
    return table(rows, [(o.case.source, o.case.name, o.failure) for o in outcomes if not o.passed])
