"""A change's blast radius: what it takes with it, in counts and names (never contents).

It is shown to an approver (tickets), in a refusal's Status message (one summary line), to risk
webhooks (`blastRadius` in the ChangeReview) and in the audit event (`kubegate.io/blast-radius`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FIRST_NAMES = 5  # names shown per kind; the count says how many more


@dataclass
class Taken:
    """Objects of one kind the change removes."""

    kind: str
    count: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.count += 1
        if len(self.names) < FIRST_NAMES:
            self.names.append(name)


@dataclass
class WorkloadLoss:
    """A workload whose ready pods the change takes away (all of them, or some)."""

    kind: str
    namespace: str
    name: str
    ready_before: int
    ready_after: int
    behind_services: list[str] = field(default_factory=list)


@dataclass
class BudgetLoss:
    """A PodDisruptionBudget whose healthy pods the change takes away."""

    namespace: str
    name: str
    healthy_before: int
    healthy_after: int
    desired: int
    rule: str  # "minAvailable 2", "maxUnavailable 25%"

    @property
    def violated(self) -> bool:
        return self.healthy_after < self.desired

    def line(self) -> str:
        return f"PDB {self.name}: {self.healthy_before} → {self.healthy_after} available, {self.rule}"


@dataclass
class ServiceLoss:
    """A Service whose ready endpoints the change takes away."""

    namespace: str
    name: str
    ready_before: int
    ready_after: int
    deleted: bool = False  # the Service itself goes: every endpoint stops receiving its traffic


@dataclass
class RouteLoss:
    """An Ingress deleted: a Service it routes to, whose ready endpoints stop receiving its traffic."""

    ingress: str
    service: str
    ready_endpoints: int


@dataclass
class VolumeLoss:
    claim: str
    volume: str
    reclaim_policy: str

    @property
    def data_deleted(self) -> bool:
        return self.reclaim_policy == "Delete"


@dataclass
class NodeChange:
    """Schedulable capacity after a cordon (or uncordon): unschedulable nodes, in the cluster and per zone."""

    node: str
    zone: str
    unschedulable_before: int
    unschedulable_after: int
    nodes: int
    zone_unschedulable_after: int = 0
    zone_nodes: int = 0


@dataclass
class ReplicaChange:
    kind: str
    namespace: str
    name: str
    replicas_before: int
    replicas_after: int
    ready_before: int
    ready_after: int


@dataclass
class BlastRadius:
    change: str  # what was assessed, in words: "delete deployments.apps shop/web (propagation Background)"
    taken: dict[str, Taken] = field(default_factory=dict)  # kind -> objects it removes
    workloads: list[WorkloadLoss] = field(default_factory=list)
    budgets: list[BudgetLoss] = field(default_factory=list)
    services: list[ServiceLoss] = field(default_factory=list)
    volumes: list[VolumeLoss] = field(default_factory=list)
    routes: list[RouteLoss] = field(default_factory=list)
    nodes: NodeChange | None = None
    replicas: ReplicaChange | None = None
    namespace_workloads: int | None = None  # a namespace delete: the workloads in it
    custom_resources: int | None = None  # a CRD delete: its custom resources
    fields: list[str] = field(default_factory=list)  # an update: the field paths it changes
    protections: list[str] = field(default_factory=list)  # OpenKruise delete protection that applies
    managed_by: list[str] = field(default_factory=list)  # GitOps tools that own the object
    incomplete: list[str] = field(default_factory=list)  # what could not be read: counts are "at least"
    reads: int = 0  # calls made to the cluster to assess it
    objects_read: int = 0
    seconds: float = 0.0

    def take(self, kind: str, name: str) -> None:
        self.taken.setdefault(kind, Taken(kind)).add(name)

    @property
    def complete(self) -> bool:
        return not self.incomplete

    def _count(self, n: int) -> str:
        return f"at least {n}" if self.incomplete else str(n)

    def summary(self) -> str:
        """One line for a Status message: "takes with it: 1 Deployment, 3 ReplicaSets, 12 Pods; PDB web 2 → 0"."""
        parts: list[str] = []
        if self.taken:
            parts.append("takes with it: " + ", ".join(
                f"{self._count(t.count)} {t.kind}{'' if t.count == 1 else 's'}" for t in self.taken.values()))
        if self.replicas is not None:
            r = self.replicas
            parts.append(f"{r.kind} {r.name}: {r.replicas_before} → {r.replicas_after} replicas "
                         f"({r.ready_before} → {r.ready_after} ready)")
        if self.nodes is not None:
            n = self.nodes
            parts.append(f"unschedulable nodes {n.unschedulable_before} → {n.unschedulable_after} of {n.nodes}"
                         + (f" ({n.zone_unschedulable_after} of {n.zone_nodes} in zone {n.zone})" if n.zone else ""))
        parts += [b.line() for b in self.budgets if b.healthy_after < b.healthy_before]
        parts += [f"Service {s.name}: {'deleted, ' if s.deleted else ''}{s.ready_before} → {s.ready_after} ready "
                  "endpoints" for s in self.services]
        parts += [f"{w.kind} {w.name}: last ready replica goes" for w in self.workloads
                  if w.ready_after == 0 < w.ready_before]
        parts += [f"Ingress {r.ingress} stops routing to Service {r.service} ({r.ready_endpoints} ready endpoints)"
                  for r in self.routes]
        parts += [f"volume {v.volume} of claim {v.claim} is {'deleted with its data' if v.data_deleted else 'kept'} "
                  f"(reclaim policy {v.reclaim_policy})" for v in self.volumes]
        if self.namespace_workloads is not None:
            parts.append(f"{self._count(self.namespace_workloads)} workloads in the namespace")
        if self.custom_resources is not None:
            parts.append(f"{self._count(self.custom_resources)} custom resources of it")
        if self.fields:
            shown = ", ".join(self.fields[:6]) + (f" and {len(self.fields) - 6} more" if len(self.fields) > 6 else "")
            parts.append(f"changes {shown}")
        parts += self.protections + [f"managed by {m}" for m in self.managed_by]
        if self.incomplete:
            parts.append("incomplete: " + "; ".join(self.incomplete[:3]))
        return "; ".join(parts) if parts else "nothing else goes with it"

    def to_json(self) -> dict[str, Any]:
        """For tickets, webhooks and `kubegate preview -o json`: counts and names."""
        return {
            "change": self.change,
            "complete": self.complete,
            "summary": self.summary(),
            "takes": [{"kind": t.kind, "count": t.count, "names": t.names} for t in self.taken.values()],
            "workloads": [vars(w) for w in self.workloads],
            "podDisruptionBudgets": [{**vars(b), "violated": b.violated} for b in self.budgets],
            "services": [vars(s) for s in self.services],
            "volumes": [{**vars(v), "dataDeleted": v.data_deleted} for v in self.volumes],
            "routes": [vars(r) for r in self.routes],
            "nodes": vars(self.nodes) if self.nodes else None,
            "replicas": vars(self.replicas) if self.replicas else None,
            "namespaceWorkloads": self.namespace_workloads,
            "customResources": self.custom_resources,
            "changedFields": self.fields,
            "protections": self.protections,
            "managedBy": self.managed_by,
            "incomplete": self.incomplete,
            "cost": {"reads": self.reads, "objects": self.objects_read, "seconds": round(self.seconds, 3)},
        }
