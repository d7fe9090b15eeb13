"""Workload controllers, done at once (opt-in: `Emulator(controllers=True)`, `harness.start(controllers=True)`).

What the kube-controller-manager would leave behind once settled, so that a change's consequences
can be read off the emulated cluster as off a real one: a Deployment owns one ReplicaSet per pod
template (the current one scaled to `replicas`, older ones to 0), a ReplicaSet and a StatefulSet
own their pods, a DaemonSet one pod per schedulable node. Pods are Ready when created; a test
makes one unready through `pods/status`. Not emulated: rollout pacing (maxSurge/maxUnavailable),
scheduling (pods go to the nodes in turn), Jobs and CronJobs (their pods are not made), HPAs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Obj, Store

OWNING = ("deployments", "replicasets", "statefulsets", "daemonsets")


def _owner_ref(owner: "Obj") -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _owned_by(obj: "Obj", owner: "Obj") -> bool:
    return any(r.get("uid") == owner["metadata"]["uid"] for r in obj["metadata"].get("ownerReferences") or [])


def template_hash(template: Any) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _pod_name(owner: "Obj", i: int) -> str:
    suffix = hashlib.sha256(f"{owner['metadata']['uid']}/{i}".encode()).hexdigest()[:5]
    return f"{owner['metadata']['name']}-{suffix}"


class Controllers:
    def __init__(self, store: "Store") -> None:
        self.store = store
        self._busy = False

    def settle(self, plural: str, namespace: str) -> None:
        """After a write to a workload, a node or a pod (a deleted pod is replaced by its owner): bring
        dependents in line, once, no recursion."""
        if self._busy or plural not in (*OWNING, "nodes", "pods"):
            return
        self._busy = True
        try:
            for kind in OWNING:  # owners before what they own: Deployment -> ReplicaSet -> Pod
                rt = self._type(kind)
                for obj in self.store.list_objects(rt, namespace or None):
                    getattr(self, f"_{kind}")(obj)
        finally:
            self._busy = False

    def _type(self, plural: str) -> Any:
        group = "" if plural in ("pods", "nodes") else "apps"
        rt = self.store.registry.lookup(group, "v1", plural)
        assert rt is not None
        return rt

    def _deployments(self, deploy: "Obj") -> None:
        rs_type = self._type("replicasets")
        ns, spec = deploy["metadata"]["namespace"], deploy.get("spec") or {}
        current = f"{deploy['metadata']['name']}-{template_hash(spec.get('template'))}"
        owned = [rs for rs in self.store.list_objects(rs_type, ns) if _owned_by(rs, deploy)]
        for rs in owned:
            if rs["metadata"]["name"] != current and (rs.get("spec") or {}).get("replicas", 0):
                rs["spec"]["replicas"] = 0  # an older template: scaled away once the new one runs
                self.store.update(rs_type, ns, rs["metadata"]["name"], rs)
        wanted = {"replicas": spec.get("replicas", 1), "selector": copy.deepcopy(spec.get("selector")),
                  "template": copy.deepcopy(spec.get("template"))}
        mine = next((rs for rs in owned if rs["metadata"]["name"] == current), None)
        if mine is None:
            self.store.create(rs_type, ns, {"metadata": {"name": current, "ownerReferences": [_owner_ref(deploy)],
                                                         "labels": (wanted["template"] or {}).get("metadata", {})
                                                         .get("labels", {})}, "spec": wanted})
        elif mine["spec"].get("replicas") != wanted["replicas"]:
            mine["spec"]["replicas"] = wanted["replicas"]
            self.store.update(rs_type, ns, current, mine)

    def _replicasets(self, rs: "Obj") -> None:
        self._pods_for(rs, (rs.get("spec") or {}).get("replicas", 1), lambda i: None)

    def _statefulsets(self, sts: "Obj") -> None:
        self._pods_for(sts, (sts.get("spec") or {}).get("replicas", 1), lambda i: f"{sts['metadata']['name']}-{i}")

    def _daemonsets(self, ds: "Obj") -> None:
        nodes = [n for n in self.store.list_objects(self._type("nodes"), None)
                 if not (n.get("spec") or {}).get("unschedulable")]
        self._pods_for(ds, len(nodes), lambda i: None, nodes=[n["metadata"]["name"] for n in nodes])

    def _pods_for(self, owner: "Obj", replicas: int, name_of: Any, nodes: list[str] | None = None) -> None:
        pods_type = self._type("pods")
        ns = owner["metadata"]["namespace"]
        mine = sorted((p for p in self.store.list_objects(pods_type, ns) if _owned_by(p, owner)),
                      key=lambda p: p["metadata"]["name"])
        for extra in mine[replicas:][::-1]:  # scaled down: the newest names go first
            self.store.delete(pods_type, ns, extra["metadata"]["name"])
        template = (owner.get("spec") or {}).get("template") or {}
        all_nodes = nodes or [n["metadata"]["name"] for n in self.store.list_objects(self._type("nodes"), None)]
        taken = {p["metadata"]["name"] for p in mine}
        for i in range(len(mine), replicas):
            name = name_of(i) or _pod_name(owner, i)
            if name in taken:
                continue
            spec = copy.deepcopy(template.get("spec") or {})
            if all_nodes:
                spec.setdefault("nodeName", all_nodes[i % len(all_nodes)])
            self.store.create(pods_type, ns, {"metadata": {"name": name, "labels": copy.deepcopy(
                (template.get("metadata") or {}).get("labels") or {}), "ownerReferences": [_owner_ref(owner)]},
                "spec": spec})
