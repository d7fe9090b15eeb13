"""The risk-gate policy directory (policies/gates: limits.yaml, freeze.yaml, rules.yaml,
webhooks.yaml): loaded whole, checked, hot-reloaded.

Like the authorization policy, a changed directory is read and checked completely before it
replaces the set in force; a set with any problem is refused and the last good one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import change_policy, limits_policy
from .authz import fingerprint
from .change_policy import ChangePolicy
from .limits_policy import LimitsPolicy

log = logging.getLogger("kubegate.gates")


class GatePolicyError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GatePolicy:
    limits: LimitsPolicy = field(default_factory=LimitsPolicy)
    change: ChangePolicy = field(default_factory=ChangePolicy)


def load(directory: Path) -> tuple[GatePolicy, list[str]]:
    limits, problems = limits_policy.load(directory)
    change, change_problems = change_policy.load(directory)
    return GatePolicy(limits, change), problems + change_problems


def load_checked(directory: Path) -> GatePolicy:
    if not directory.is_dir():
        raise GatePolicyError([f"{directory}: not a directory"])
    policy, problems = load(directory)
    if problems:
        raise GatePolicyError(problems)
    return policy


class GatePolicyHolder:
    def __init__(self, directory: Path, on_reload: Callable[[bool, list[str]], None] | None = None) -> None:
        self.directory = directory
        self.on_reload = on_reload
        self.current = load_checked(directory)
        self._seen = fingerprint(directory)
        self.loaded_at = time.time()

    def reload_if_changed(self) -> bool | None:
        """None: nothing changed; True: a new set is in force; False: the new set was refused."""
        try:
            now = fingerprint(self.directory)
        except OSError as e:
            log.error("cannot read gate policy directory %s: %s; the loaded policy keeps serving", self.directory, e)
            return None
        if now == self._seen:
            return None
        self._seen = now
        try:
            candidate = load_checked(self.directory)
        except (GatePolicyError, OSError) as e:
            problems = e.problems if isinstance(e, GatePolicyError) else [str(e)]
            log.error("refused the new gate policy in %s (%d problem(s)); the previous policy keeps serving: %s",
                      self.directory, len(problems), "; ".join(problems[:10]))
            if self.on_reload:
                self.on_reload(False, problems)
            return False
        self.current = candidate
        self.loaded_at = time.time()
        log.info("loaded gate policy from %s (%d budgets, %d QPS limits, %d freeze windows, %d rules, "
                 "%d webhooks)", self.directory, len(candidate.limits.budgets), len(candidate.limits.qps),
                 len(candidate.change.freeze), len(candidate.change.rules), len(candidate.change.webhooks))
        if self.on_reload:
            self.on_reload(True, [])
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()
