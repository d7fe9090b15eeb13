"""`kubectl get` columns: the meta.k8s.io/v1 Table kube-apiserver serves when a client asks for one
(`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), for the kinds people look at most —
pods (READY, STATUS, RESTARTS), deployments (READY, UP-TO-DATE, AVAILABLE), replica sets,
stateful sets, nodes, services, namespaces — and NAME, AGE for the rest."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from aiohttp import web

from .resources import ResourceType

Obj = dict[str, Any]


def wanted(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _age(obj: Obj, now: float) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        seconds = now - dt.datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "<unknown>"
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _pod(o: Obj) -> list[Any]:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    containers = (o.get("spec") or {}).get("containers") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    phase = (o.get("status") or {}).get("phase", "Pending")
    return [f"{ready}/{len(containers)}", phase, restarts]


def _deployment(o: Obj) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    want = spec.get("replicas", 1)
    return [f"{status.get('readyReplicas', 0)}/{want}", status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0)]


def _replicas(o: Obj) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    return [spec.get("replicas", 1), status.get("replicas", 0), status.get("readyReplicas", 0)]


def _statefulset(o: Obj) -> list[Any]:
    return [f"{(o.get('status') or {}).get('readyReplicas', 0)}/{(o.get('spec') or {}).get('replicas', 1)}"]


def _node(o: Obj) -> list[Any]:
    conditions = (o.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    status = "Ready" if ready else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return [status, ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")]


def _service(o: Obj) -> list[Any]:
    spec = o.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), ports or "<none>"]


def _namespace(o: Obj) -> list[Any]:
    return [(o.get("status") or {}).get("phase", "Active")]


Column = tuple[str, str]  # (name, type)
KINDS: dict[str, tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    "pods": ([("Ready", "string"), ("Status", "string"), ("Restarts", "integer")], _pod),
    "deployments": ([("Ready", "string"), ("Up-to-date", "integer"), ("Available", "integer")], _deployment),
    "replicasets": ([("Desired", "integer"), ("Current", "integer"), ("Ready", "integer")], _replicas),
    "statefulsets": ([("Ready", "string")], _statefulset),
    "nodes": ([("Status", "string"), ("Version", "string")], _node),
    "services": ([("Type", "string"), ("Cluster-IP", "string"), ("Port(s)", "string")], _service),
    "namespaces": ([("Status", "string")], _namespace),
}


def table(rt: ResourceType, items: list[Obj], now: float) -> Obj:
    columns, cells = KINDS.get(rt.plural, ([], lambda o: []))
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "the object's name"}]
    definitions += [{"name": name, "type": kind, "format": "", "description": ""} for name, kind in columns]
    definitions.append({"name": "Age", "type": "string", "format": "", "description": "since it was created"})
    rows = [{"cells": [(o.get("metadata") or {}).get("name", ""), *cells(o), _age(o, now)],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata") or {}}} for o in items]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": definitions,
            "rows": rows}
