"""Rollout order's policy (rollouts.yaml): ordered stages of clusters, and the workloads they govern.

    cluster_labels:                      # labels of the clusters behind the gateway (for `labels:` stages)
      hz-3: {env: prod, canary: "true"}
    rollouts:
      - name: shop
        description: the shop's workloads go test -> staging -> canary -> prod
        stages:
          - {name: staging, clusters: ["staging-*"], soak: 30m}
          - {name: prod-canary, labels: {canary: "true"}, soak: 1h, verify: [e2e]}   # verify: risk webhooks
          - {name: prod, clusters: ["hz-*"]}
        workloads:
          namespaces: ["shop*"]          # globs (default: every namespace)
          labels: {app.kubernetes.io/part-of: shop}   # the workload's labels (default: any)
          kinds: [deployments.apps, statefulsets.apps, daemonsets.apps]    # the default
          custom: [{resource: rollouts.argoproj.io, template: spec.template}]   # more kinds, with the path of their pod template
        outcome: require-approval        # or deny: what a change that skips the order gets
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import yamlsrc
from .change_policy import _Reader

FILE = "rollouts.yaml"
BUILTIN_KINDS = {"deployments.apps": "spec.template", "statefulsets.apps": "spec.template",
                 "daemonsets.apps": "spec.template"}
OUTCOMES = ("require-approval", "deny")
_RESOURCE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9.-]+)?$")


@dataclass(frozen=True)
class Stage:
    name: str
    clusters: tuple[str, ...] = ()  # globs
    labels: tuple[tuple[str, str], ...] = ()  # cluster labels (cluster_labels), all must match
    soak_seconds: float = 0.0  # how long a template must have run ready here before the next stages take it
    verify: tuple[str, ...] = ()  # risk webhooks (webhooks.yaml) that must pass before promotion from here

    def has(self, cluster: str, labels: dict[str, str]) -> bool:
        by_name = any(fnmatch.fnmatchcase(cluster, c) for c in self.clusters)
        by_label = bool(self.labels) and all(labels.get(k) == v for k, v in self.labels)
        return by_name or by_label


@dataclass(frozen=True)
class Rollout:
    name: str
    description: str
    stages: tuple[Stage, ...]
    namespaces: tuple[str, ...]
    workload_labels: tuple[tuple[str, str], ...]
    kinds: tuple[tuple[str, str], ...]  # (resource.group, pod template path)
    outcome: str
    source: str = ""

    def template_path(self, group_resource: str) -> str:
        return next((path for kind, path in self.kinds if kind == group_resource), "")

    def governs(self, group_resource: str, namespace: str) -> bool:
        return bool(self.template_path(group_resource)) and any(fnmatch.fnmatchcase(namespace, n)
                                                                for n in self.namespaces)


@dataclass(frozen=True)
class RolloutPolicy:
    rollouts: tuple[Rollout, ...] = ()
    cluster_labels: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def labels_of(self, cluster: str) -> dict[str, str]:
        return dict(next((labels for name, labels in self.cluster_labels if name == cluster), ()))


def _pairs(r: _Reader, node: Any, key: str, what: str) -> tuple[tuple[str, str], ...]:
    value = node.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, bool)) for v in value.values()):
        r.problem(node, f"{what}.{key} must map label keys to values")
        return ()
    return tuple((str(k), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items())


def _stage(r: _Reader, node: Any, what: str) -> Stage | None:
    if not r.keys(node, {"name", "clusters", "labels", "soak", "verify"}, what):
        return None
    name = r.ident(node, "name", what, "stage")
    what = f"{what} stage {name}"
    clusters = r.strings(node, "clusters", what, ())
    labels = _pairs(r, node, "labels", what)
    if not clusters and not labels:
        r.problem(node, f"{what} selects no cluster: give clusters (names or globs) or labels")
    soak = yamlsrc.duration(node.get("soak", 0))
    if soak is None:
        r.problem(node, f"{what}.soak must be a duration such as 30m (0: no wait)")
        soak = 0.0
    return Stage(name, clusters, labels, soak, r.strings(node, "verify", what, ()))


def _rollout(r: _Reader, node: Any, i: int, webhooks: set[str]) -> Rollout | None:
    what = f"rollouts[{i}]"
    if not r.keys(node, {"name", "description", "stages", "workloads", "outcome"}, what):
        return None
    name = r.ident(node, "name", what, f"rollout-{i}")
    what = f"rollout {name}"
    raw_stages = node.get("stages")
    if not isinstance(raw_stages, list) or len(raw_stages) < 2:
        r.problem(node, f"{what}.stages must list at least two stages, earliest first")
        raw_stages = []
    stages = [s for s in (_stage(r, n, what) for n in raw_stages) if s is not None]
    r.duplicates([_Named(s.name, yamlsrc.where(r.path, node)) for s in stages], "name", f"{what} stage")
    for s in stages:
        for hook in s.verify:
            if hook not in webhooks:
                r.problem(node, f"{what} stage {s.name}.verify: no risk webhook named {hook!r} in webhooks.yaml")
    workloads = node.get("workloads") or {}
    if not isinstance(workloads, dict) or not r.keys(workloads, {"namespaces", "labels", "kinds", "custom"},
                                                     f"{what}.workloads"):
        workloads = {}
    kinds = [(k, BUILTIN_KINDS[k]) for k in r.strings(workloads, "kinds", f"{what}.workloads",
                                                        tuple(BUILTIN_KINDS)) if k in BUILTIN_KINDS]
    for k in r.strings(workloads, "kinds", f"{what}.workloads", ()):
        if k not in BUILTIN_KINDS:
            r.problem(workloads, f"{what}.workloads.kinds: {k!r} is not one of {', '.join(BUILTIN_KINDS)} (name "
                                 "other kinds under custom, with the path of their pod template)")
    for c in workloads.get("custom") or []:
        if not isinstance(c, dict) or not _RESOURCE.match(str(c.get("resource", ""))) or \
                not isinstance(c.get("template"), str) or not c["template"]:
            r.problem(workloads, f"{what}.workloads.custom: each needs resource (resource.group) and template "
                                 "(the path of its pod template, e.g. spec.template)")
            continue
        kinds.append((str(c["resource"]), str(c["template"])))
    outcome = node.get("outcome", "require-approval")
    if outcome not in OUTCOMES:
        r.problem(node, f"{what}.outcome must be one of {', '.join(OUTCOMES)}")
    return Rollout(name, str(node.get("description", "")), tuple(stages),
                   r.strings(workloads, "namespaces", f"{what}.workloads", ("*",)),
                   _pairs(r, workloads, "labels", f"{what}.workloads"), tuple(kinds), str(outcome),
                   yamlsrc.where(r.path, node))


@dataclass(frozen=True)
class _Named:
    name: str
    source: str


def load(directory: Path, webhooks: set[str]) -> tuple[RolloutPolicy, list[str]]:
    path = directory / FILE
    if not path.exists():
        return RolloutPolicy(), []
    r = _Reader(path)
    data, error = yamlsrc.load(path)
    if error:
        return RolloutPolicy(), [error]
    if data is None:
        return RolloutPolicy(), []
    if not r.keys(data, {"rollouts", "cluster_labels"}, path.name):
        return RolloutPolicy(), r.problems
    raw_labels = data.get("cluster_labels") or {}
    labels: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    if not isinstance(raw_labels, dict):
        r.problem(data, "cluster_labels must map cluster names to their labels")
    else:
        labels = [(str(c), _pairs(r, raw_labels, c, "cluster_labels")) for c in raw_labels]
    raw = data.get("rollouts") or []
    if not isinstance(raw, list):
        r.problem(data, "rollouts must be a list")
        raw = []
    rollouts = [x for i, n in enumerate(raw) if (x := _rollout(r, n, i, webhooks))]
    r.duplicates(rollouts, "name", "rollout")
    return RolloutPolicy(tuple(rollouts), tuple(labels)), r.problems
