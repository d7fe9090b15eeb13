"""The risk-gate policy directory (policies/gates: limits.yaml, freeze.yaml, rules.yaml,
webhooks.yaml, health.yaml, rollouts.yaml): loaded whole, checked, hot-reloaded.

Like the authorization policy, a changed directory is read and checked completely before it
replaces the set in force; a set with any problem is refused and the last good one keeps serving.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import change_policy, health_policy, rollout_policy
from . import limits_policy
from .change_policy import ChangePolicy
from .health_policy import HealthPolicy
from .rollout_policy import RolloutPolicy
from ..config.hot_reload import Watched
from .limits_policy import LimitsPolicy

class GatePolicyError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GatePolicy:
    limits: LimitsPolicy = field(default_factory=LimitsPolicy)
    change: ChangePolicy = field(default_factory=ChangePolicy)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    rollouts: RolloutPolicy = field(default_factory=RolloutPolicy)
    revision: str = ""  # a content hash of the set's files, in every audit event and in /metrics


def load(directory: Path) -> tuple[GatePolicy, list[str]]:
    limits, problems = limits_policy.load(directory)
    change, change_problems = change_policy.load(directory)
    health, health_problems = health_policy.load(directory)
    rollouts, rollout_problems = rollout_policy.load(directory, {w.name for w in change.webhooks})
    content = hashlib.sha256()
    for path in sorted(directory.glob("*.y*ml")):
        content.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return (GatePolicy(limits, change, health, rollouts, content.hexdigest()[:16]),
            problems + change_problems + health_problems + rollout_problems)


def load_checked(directory: Path) -> GatePolicy:
    if not directory.is_dir():
        raise GatePolicyError([f"{directory}: not a directory"])
    policy, problems = load(directory)
    if problems:
        raise GatePolicyError(problems)
    return policy


class GatePolicyHolder(Watched[GatePolicy]):
    def __init__(self, directory: Path, on_reload: Callable[[bool, list[str]], None] | None = None) -> None:
        super().__init__(directory, lambda: load_checked(directory), what="gate policy", describe=_describe,
                         errors=(GatePolicyError,), on_reload=on_reload)


def _describe(p: GatePolicy) -> str:
    return (f"{len(p.limits.budgets)} budgets, {len(p.limits.qps)} QPS limits, {len(p.change.freeze)} freeze "
            f"windows, {len(p.change.rules)} rules, {len(p.change.webhooks)} webhooks, {len(p.health.gates)} alert gates, "
            f"{len(p.rollouts.rollouts)} rollouts")
