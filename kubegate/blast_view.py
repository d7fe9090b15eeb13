"""A change's blast radius (its JSON: `consequences.radius.BlastRadius.to_json`) as a person reads
it, line by line: `kubegate approvals show`, `kubegate preview` and the webshell's Approvals page."""

from __future__ import annotations

from typing import Any


def radius_lines(r: dict[str, Any]) -> list[str]:
    """A blast radius (its JSON) as an approver reads it: what goes, in numbers and first names."""
    lines = [f"{r['change']}" + ("" if r.get("complete", True) else "  (INCOMPLETE: counts are lower bounds)")]
    for t in r.get("takes") or []:
        more = t["count"] - len(t["names"])
        lines.append(f"takes {t['count']} {t['kind']}: {', '.join(t['names'])}" + (f" and {more} more" if more else ""))
    if rep := r.get("replicas"):
        lines.append(f"{rep['kind']} {rep['name']}: replicas {rep['replicas_before']} → {rep['replicas_after']}, "
                     f"ready {rep['ready_before']} → {rep['ready_after']}")
    for w in r.get("workloads") or []:
        behind = f" (behind Service {', '.join(w['behind_services'])})" if w.get("behind_services") else ""
        lines.append(f"{w['kind']} {w['namespace']}/{w['name']}: ready {w['ready_before']} → {w['ready_after']}{behind}")
    for b in r.get("podDisruptionBudgets") or []:
        lines.append(f"PDB {b['namespace']}/{b['name']}: {b['healthy_before']} → {b['healthy_after']} available, "
                     f"{b['rule']}" + ("  VIOLATED" if b.get("violated") else ""))
    for s in r.get("services") or []:
        lines.append(f"Service {s['namespace']}/{s['name']}: {'deleted; ' if s.get('deleted') else ''}ready endpoints "
                     f"{s['ready_before']} → {s['ready_after']}")
    for route in r.get("routes") or []:
        lines.append(f"Ingress {route['ingress']} stops routing to Service {route['service']} "
                     f"({route['ready_endpoints']} ready endpoints)")
    for v in r.get("volumes") or []:
        lines.append(f"volume {v['volume']} (claim {v['claim']}, reclaim {v['reclaim_policy']}): "
                     + ("DELETED with its data" if v.get("dataDeleted") else "kept"))
    if n := r.get("nodes"):
        lines.append(f"unschedulable nodes {n['unschedulable_before']} → {n['unschedulable_after']} of {n['nodes']}"
                     + (f"; zone {n['zone']}: {n['zone_unschedulable_after']} of {n['zone_nodes']}" if n.get("zone")
                        else ""))
    if r.get("namespaceWorkloads") is not None:
        lines.append(f"workloads in the namespace: {r['namespaceWorkloads']}")
    if r.get("customResources") is not None:
        lines.append(f"custom resources deleted with it: {r['customResources']}")
    if r.get("changedFields"):
        lines.append("changes fields: " + ", ".join(r["changedFields"]))
    lines += [f"protected: {p}" for p in r.get("protections") or []]
    lines += [f"managed by {m}" for m in r.get("managedBy") or []]
    lines += [f"could not read: {i}" for i in r.get("incomplete") or []]
    cost = r.get("cost") or {}
    lines.append(f"(assessed with {cost.get('reads', 0)} reads of {cost.get('objects', 0)} objects in "
                 f"{cost.get('seconds', 0)}s, as the requester)")
    return lines
