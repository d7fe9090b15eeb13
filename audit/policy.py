"""An audit policy in kube-apiserver's own format (audit.k8s.io/v1 Policy): which level each request
is recorded at, and which stages are left out.

    apiVersion: audit.k8s.io/v1
    kind: Policy
    omitStages: [RequestReceived]
    omitManagedFields: true
    rules:
      - level: None
        users: ["system:kube-proxy"]
      - level: RequestResponse
        resources: [{group: "", resources: ["secrets", "configmaps"]}]
        namespaces: ["prod"]
      - level: Metadata
        nonResourceURLs: ["/healthz*", "/version"]
      - level: Request
        verbs: ["create", "update", "patch", "delete"]
        userGroups: ["system:authenticated"]
        omitStages: [ResponseStarted]

The first rule that matches decides, as in kube-apiserver; no match: level None. Without a policy
file kubegate records everything at Metadata. Problems are reported with the file and rule, all at
once (`PolicyError`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubegate import strict_yaml

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
_RULE_KEYS = {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs", "omitStages",
              "omitManagedFields"}


class PolicyError(Exception):
    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s) in {path}:\n" + "\n".join(f"  {p}" for p in problems))
        self.path, self.problems = path, problems


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()  # "pods", "pods/log", "*/scale", "pods/*"; empty: all
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool | None = None


@dataclass(frozen=True)
class Attributes:
    """What a rule looks at, as the gateway classified the request."""

    user: str
    groups: tuple[str, ...]
    verb: str
    is_resource: bool
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    level: str
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = field(default_factory=lambda: (Rule("Metadata"),))
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool = False

    def decide(self, a: Attributes) -> Decision:
        for rule in self.rules:
            if _matches(rule, a):
                omit = rule.omit_managed_fields if rule.omit_managed_fields is not None else self.omit_managed_fields
                return Decision(rule.level, frozenset(self.omit_stages) | frozenset(rule.omit_stages), omit)
        return Decision("None")


def _matches(rule: Rule, a: Attributes) -> bool:
    if rule.users and a.user not in rule.users:
        return False
    if rule.user_groups and not set(rule.user_groups) & set(a.groups):
        return False
    if rule.verbs and a.verb not in rule.verbs:
        return False
    if rule.resources or rule.namespaces:
        if not a.is_resource:
            return False
        if rule.namespaces and a.namespace not in rule.namespaces:
            return False  # "" in namespaces matches cluster-scoped objects, as in kube-apiserver
        if rule.resources and not any(_resource_matches(g, a) for g in rule.resources):
            return False
    if rule.non_resource_urls:
        if a.is_resource:
            return False
        return any(a.path == u or (u.endswith("*") and a.path.startswith(u[:-1])) for u in rule.non_resource_urls)
    return True


def _resource_matches(g: GroupResources, a: Attributes) -> bool:
    if g.group != a.api_group and g.group != "*":
        return False
    if g.resources:
        full = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        if not any(fnmatch.fnmatchcase(full, r) if "*" in r else full == r for r in g.resources):
            return False
    return not g.resource_names or a.name in g.resource_names


def _strings(node: Any, key: str, where: str, problems: list[str]) -> tuple[str, ...]:
    value = node.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: {key} must be a list of strings")
        return ()
    return tuple(value)


def _stages(node: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    stages = _strings(node, "omitStages", where, problems)
    problems += [f"{where}: unknown stage {s!r} in omitStages (one of {', '.join(STAGES)})"
                 for s in stages if s not in STAGES]
    return stages


def load(path: Path) -> Policy:
    """The policy in PATH, or PolicyError listing every problem."""
    problems: list[str] = []
    try:
        data = strict_yaml.read(path)
    except strict_yaml.Problem as e:
        raise PolicyError(path, [e.report()]) from None
    if not isinstance(data, dict):
        raise PolicyError(path, ["the file must hold an audit.k8s.io/v1 Policy object"])
    if data.get("apiVersion") not in ("audit.k8s.io/v1", "audit.k8s.io/v1beta1") or data.get("kind") != "Policy":
        problems.append("apiVersion must be audit.k8s.io/v1 and kind Policy")
    omit = _stages(data, "policy", problems)
    rules = []
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.append("rules: a policy needs a list of rules (the first match decides)")
        raw_rules = []
    for i, node in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(node, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += [f"{where}: unknown key {k!r}" for k in node if k not in _RULE_KEYS]
        level = node.get("level")
        if level not in LEVELS:
            problems.append(f"{where}: level must be one of {', '.join(LEVELS)}")
            continue
        groups = []
        for j, g in enumerate(node.get("resources") or []):
            if not isinstance(g, dict) or set(g) - {"group", "resources", "resourceNames"}:
                problems.append(f"{where}.resources[{j}]: keys are group, resources, resourceNames")
                continue
            groups.append(GroupResources(str(g.get("group", "")), _strings(g, "resources", where, problems),
                                         _strings(g, "resourceNames", where, problems)))
        urls = _strings(node, "nonResourceURLs", where, problems)
        if urls and (groups or node.get("namespaces")):
            problems.append(f"{where}: nonResourceURLs cannot be combined with resources or namespaces")
        managed = node.get("omitManagedFields")
        if managed is not None and not isinstance(managed, bool):
            problems.append(f"{where}: omitManagedFields must be true or false")
            managed = None
        rules.append(Rule(level, _strings(node, "users", where, problems), _strings(node, "userGroups", where, problems),
                          _strings(node, "verbs", where, problems), tuple(groups),
                          _strings(node, "namespaces", where, problems), urls, _stages(node, where, problems),
                          managed))
    managed_fields = data.get("omitManagedFields", False)
    if not isinstance(managed_fields, bool):
        problems.append("omitManagedFields must be true or false")
        managed_fields = False
    if problems:
        raise PolicyError(path, problems)
    return Policy(tuple(rules), omit, managed_fields)
