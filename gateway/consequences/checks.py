"""Availability checks on a blast radius, named in rules (`when: {consequence: CHECK}`).

Each check returns what it found, in numbers ("PDB web: 2 → 0 available, minAvailable 2"), or
nothing. On a radius that could not be read whole every check fires, saying so: the gateway never
lets a change pass because it could not see what the change would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .radius import BlastRadius


@dataclass(frozen=True)
class Consequence:
    """A check and its thresholds, as a rule names it."""

    check: str
    above: int = 0  # unschedulable-nodes, namespace-workloads: fires past this many
    per: str = "cluster"  # unschedulable-nodes: counted in the "cluster" or in the node's "zone"


def _below_budget(r: BlastRadius, c: Consequence) -> list[str]:
    return [b.line() for b in r.budgets if b.violated and b.healthy_after < b.healthy_before]


def _last_ready(r: BlastRadius, c: Consequence) -> list[str]:
    found = [f"Service {s.name}: {s.ready_before} → 0 ready endpoints" for s in r.services
             if not s.deleted and s.ready_after == 0 < s.ready_before]
    found += [f"{w.kind} {w.name}: last ready replica goes (behind Service {', '.join(w.behind_services)})"
              for w in r.workloads if w.ready_after == 0 < w.ready_before and w.behind_services]
    return found


def _unschedulable(r: BlastRadius, c: Consequence) -> list[str]:
    n = r.nodes
    if n is None or n.unschedulable_after <= n.unschedulable_before:
        return []
    if c.per == "zone":
        if n.zone and n.zone_unschedulable_after > c.above:
            return [f"{n.zone_unschedulable_after} of {n.zone_nodes} nodes of zone {n.zone} unschedulable "
                    f"(more than {c.above})"]
        return []
    if n.unschedulable_after > c.above:
        return [f"{n.unschedulable_after} of {n.nodes} nodes unschedulable (more than {c.above})"]
    return []


def _crd_with_resources(r: BlastRadius, c: Consequence) -> list[str]:
    return [f"{r.custom_resources} custom resources are deleted with it"] if r.custom_resources else []


def _volume_deleted(r: BlastRadius, c: Consequence) -> list[str]:
    return [f"volume {v.volume} of claim {v.claim} is deleted with its data (reclaim policy Delete)"
            for v in r.volumes if v.data_deleted]


def _namespace_workloads(r: BlastRadius, c: Consequence) -> list[str]:
    n = r.namespace_workloads
    return [f"{n} workloads in the namespace (more than {c.above})"] if n is not None and n > c.above else []


def _delete_protected(r: BlastRadius, c: Consequence) -> list[str]:
    return list(r.protections)


def _gitops_managed(r: BlastRadius, c: Consequence) -> list[str]:
    return [f"managed by {m}: a manual change drifts from Git" for m in r.managed_by]


CHECKS: dict[str, Callable[[BlastRadius, Consequence], list[str]]] = {
    "below-disruption-budget": _below_budget,
    "last-ready-behind-service": _last_ready,
    "unschedulable-nodes": _unschedulable,
    "crd-with-resources": _crd_with_resources,
    "volume-deleted": _volume_deleted,
    "namespace-workloads": _namespace_workloads,
    "delete-protected": _delete_protected,
    "gitops-managed": _gitops_managed,
}
WITH_THRESHOLD = frozenset({"unschedulable-nodes", "namespace-workloads"})


def findings(consequence: Consequence, radius: BlastRadius) -> list[str]:
    if not radius.complete:
        return [f"the blast radius could not be read whole ({'; '.join(radius.incomplete[:2])}), so the check "
                "applies"]
    return CHECKS[consequence.check](radius, consequence)
