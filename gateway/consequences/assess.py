"""Work out a change's blast radius from the cluster, as the garbage collector, the workload
controllers, the disruption controller and the taint manager will act on it.

What it reads (always as the requester, within the reader's budget):
- a delete: the object (or, for a collection, the objects its selectors select); its dependents
  by ownerReference where the controller that owns them makes them (a Deployment's ReplicaSets, a
  ReplicaSet's pods...; an object of another kind: the common namespaced kinds), transitively,
  unless the propagation is Orphan; a namespace: every listable namespaced resource in it, custom
  ones included; a CRD: its custom resources; a claim: its bound volume; a Service: its endpoints;
- a scale-down (scale, patch, apply, update — the object the request leaves): the workload's pods;
- a cordon or NoExecute taint of a node: the nodes, and the pods on the node that do not tolerate it;
- whenever pods go: the pods, ReplicaSets, Services and PodDisruptionBudgets of their namespace;
- an update or patch, when asked: the request itself sent with dryRun=All, against the live object.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..request.info import RequestInfo
from . import kube, protection
from .kube import Obj
from .radius import (BlastRadius, BudgetLoss, NodeChange, ReplicaChange, RouteLoss, ServiceLoss, VolumeLoss,
                     WorkloadLoss)
from .reader import ApiResource, Capped, Reader, Unreadable


def _r(group: str, plural: str, kind: str, namespaced: bool = True) -> ApiResource:
    return ApiResource(group, "v1", plural, kind, namespaced)


PODS, SERVICES, PDBS = _r("", "pods", "Pod"), _r("", "services", "Service"), _r("policy", "poddisruptionbudgets",
                                                                                 "PodDisruptionBudget")
REPLICASETS, CONTROLLER_REVISIONS = _r("apps", "replicasets", "ReplicaSet"), _r("apps", "controllerrevisions",
                                                                                "ControllerRevision")
JOBS, ENDPOINT_SLICES = _r("batch", "jobs", "Job"), _r("discovery.k8s.io", "endpointslices", "EndpointSlice")
NODES, VOLUMES = _r("", "nodes", "Node", False), _r("", "persistentvolumes", "PersistentVolume", False)
# Where a controller of each kind makes its dependents; an owner of another kind (a custom
# resource, an object someone gave dependents by hand) is looked for among the common kinds.
OWNS: dict[str, tuple[ApiResource, ...]] = {
    "Deployment": (REPLICASETS,), "ReplicaSet": (PODS,), "ReplicationController": (PODS,),
    "StatefulSet": (PODS, CONTROLLER_REVISIONS), "DaemonSet": (PODS, CONTROLLER_REVISIONS), "Job": (PODS,),
    "CronJob": (JOBS,), "Service": (ENDPOINT_SLICES,), "Pod": (), "ConfigMap": (), "Secret": (),
    "EndpointSlice": (), "ControllerRevision": (), "Event": (),
}
COMMON = (_r("apps", "deployments", "Deployment"), _r("apps", "statefulsets", "StatefulSet"),
          _r("apps", "daemonsets", "DaemonSet"), REPLICASETS, JOBS, PODS, SERVICES, _r("", "configmaps", "ConfigMap"),
          _r("", "secrets", "Secret"), _r("", "persistentvolumeclaims", "PersistentVolumeClaim"))
# What counts as a workload in a namespace: controllers of pods that nothing else controls.
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController",
                            "Job", "CronJob"})
SCALABLE = {("apps", "deployments"): "Deployment", ("apps", "statefulsets"): "StatefulSet",
            ("apps", "replicasets"): "ReplicaSet", ("", "replicationcontrollers"): "ReplicationController"}


@dataclass
class Change:
    """What a request does, as the gates read it."""

    info: RequestInfo  # the request as the gates judge it (an eviction: the delete of its pod)
    propagation: str = ""  # a delete's DeleteOptions; "" = the default (Background)
    selectors: dict[str, str] = field(default_factory=dict)  # a collection's labelSelector/fieldSelector
    new: Obj | None = None  # the object the request leaves (its body; a patch applied to the live object)
    unreadable: str = ""  # why the object a write leaves could not be worked out (then nothing is certain)
    # For the dry run that shows the fields an update changes: the request as sent.
    method: str = ""
    query: str = ""
    body: bytes = b""
    content_type: str = ""


def describe(change: Change) -> str:
    info = change.info
    where = f"{info.namespace}/{info.name}" if info.namespace else info.name or f"({info.namespace or 'all'})"
    words = f"{info.verb} {info.object_ref} {where}"
    if info.verb in ("delete", "deletecollection"):
        words += f" (propagation {change.propagation or 'Background'})"
    return words


async def assess(change: Change, reader: Reader, *, fields: bool = False) -> BlastRadius:
    """The change's blast radius; what could not be read is named in `incomplete`."""
    started = time.monotonic()
    radius = BlastRadius(describe(change))
    try:
        info = change.info
        if info.verb in ("delete", "deletecollection"):
            await _deletes(change, reader, radius)
        elif info.verb in ("update", "patch", "create") and change.new is not None:
            await _writes(change, reader, radius, fields)
        elif info.verb in ("update", "patch") and change.unreadable:
            radius.incomplete.append(f"the object the {info.verb} leaves: {change.unreadable}")
    except Capped as e:
        radius.incomplete.append(str(e))
    except Unreadable as e:
        radius.incomplete.append(f"could not read {e}")
    radius.reads, radius.objects_read, radius.seconds = reader.reads, reader.objects, time.monotonic() - started
    return radius


# -- deletes -------------------------------------------------------------------------------------

def _object_path(info: RequestInfo) -> str:
    return info.object_path


async def _deletes(change: Change, reader: Reader, radius: BlastRadius) -> None:
    info = change.info
    if info.verb == "delete":
        found = await reader.get(_object_path(info))
        targets = [found] if found is not None else []
    else:
        targets = await reader.items(info.path, **change.selectors)
    kind = _kind(info, targets)
    for obj in targets:
        radius.take(kind, kube.name_of(obj))
        if owner := protection.gitops_owner(obj):
            if owner not in radius.managed_by:
                radius.managed_by.append(owner)
    group_resource = info.group_resource
    if group_resource == "namespaces":
        for ns in targets:
            await _namespace(ns, reader, radius)
        return
    if group_resource == "customresourcedefinitions.apiextensions.k8s.io":
        for crd in targets:
            await _crd(crd, reader, radius)
        return
    if group_resource == "persistentvolumeclaims":
        for claim in targets:
            await _claim(claim, reader, radius)
    if group_resource == "persistentvolumes":
        for pv in targets:
            policy = str((pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Delete"))
            claim = ((pv.get("spec") or {}).get("claimRef") or {}).get("name", "")
            radius.volumes.append(VolumeLoss(str(claim), kube.name_of(pv), policy))
    removed_pods = [o for o in targets if kind == "Pod"]
    if change.propagation != "Orphan":
        removed_pods += await _cascade(targets, kind, info.namespace, reader, radius)
    for obj in targets:
        holds = ""
        if kind in WORKLOAD_KINDS and ((obj.get("spec") or {}).get("replicas", 1) or 0) > 0:
            holds = f"{(obj.get('spec') or {}).get('replicas', 1)} replicas"
        if why := protection.kruise_protection(obj, kind, holds):
            radius.protections.append(why)
    if group_resource == "services":
        await _services_deleted(targets, info.namespace, reader, radius)
    if group_resource == "ingresses.networking.k8s.io":
        await _ingresses_deleted(targets, info.namespace, reader, radius)
    if removed_pods:
        await _pod_losses(removed_pods, reader, radius)


def _kind(info: RequestInfo, objects: list[Obj]) -> str:
    for obj in objects:
        if isinstance(obj.get("kind"), str) and obj["kind"]:
            return str(obj["kind"])
    known = {"pods": "Pod", "namespaces": "Namespace", "services": "Service"}
    return known.get(info.resource, info.resource)


async def _cascade(targets: list[Obj], kind: str, namespace: str, reader: Reader, radius: BlastRadius) -> list[Obj]:
    """The dependents the garbage collector deletes with TARGETS (transitively); returns the pods."""
    pods: list[Obj] = []
    going = {kube.uid_of(o) for o in targets}
    frontier = [(o, kind) for o in targets]
    while frontier:
        owner, owner_kind = frontier.pop(0)
        ns = kube.meta(owner).get("namespace") or namespace
        if not ns:
            continue  # a cluster-scoped owner's namespaced dependents: not looked for (every namespace)
        for resource in OWNS.get(owner_kind, COMMON):
            for dep in await reader.items(resource.path(ns)):
                refs = kube.owner_refs(dep)
                uid = kube.uid_of(dep)
                if uid in going or not any(r.get("uid") == kube.uid_of(owner) for r in refs):
                    continue
                if any(r.get("uid") not in going for r in refs):
                    continue  # another owner keeps it: the collector only drops the reference
                going.add(uid)
                radius.take(resource.kind, kube.name_of(dep))
                frontier.append((dep, resource.kind))
                if resource.kind == "Pod":
                    pods.append(dep)
    return pods


async def _namespace(ns: Obj, reader: Reader, radius: BlastRadius) -> None:
    name = kube.name_of(ns)
    workloads = 0
    pods = 0
    for resource in await reader.resources():
        if not resource.namespaced or resource.plural in ("events", "bindings", "localsubjectaccessreviews"):
            continue
        items = await reader.items(resource.path(name))
        for obj in items:
            radius.take(resource.kind, kube.name_of(obj))
            if resource.kind in WORKLOAD_KINDS and kube.controller_ref(obj) is None:
                workloads += 1
            pods += resource.kind == "Pod"
        radius.namespace_workloads = workloads  # so far: a capped read leaves a lower bound
    radius.namespace_workloads = workloads
    if why := protection.kruise_protection(ns, "Namespace", f"{pods} pods" if pods else ""):
        radius.protections.append(why)


async def _crd(crd: Obj, reader: Reader, radius: BlastRadius) -> None:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v.get("name") for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("served", True)]
    if not versions or not names.get("plural"):
        radius.custom_resources = 0
        return
    resource = ApiResource(str(spec.get("group", "")), str(versions[0]), str(names["plural"]),
                           str(names.get("kind", names["plural"])), spec.get("scope") == "Namespaced")
    items = await reader.items(resource.path())
    radius.custom_resources = len(items)
    for obj in items:
        radius.take(resource.kind, (f"{kube.meta(obj).get('namespace')}/" if resource.namespaced else "")
                    + kube.name_of(obj))
    if why := protection.kruise_protection(crd, "CustomResourceDefinition",
                                           f"{len(items)} custom resources" if items else ""):
        radius.protections.append(why)


async def _claim(claim: Obj, reader: Reader, radius: BlastRadius) -> None:
    volume = str((claim.get("spec") or {}).get("volumeName") or "")
    if not volume:
        return
    pv = await reader.get(VOLUMES.path() + "/" + volume)
    if pv is None:
        return
    policy = str((pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Delete"))
    radius.volumes.append(VolumeLoss(kube.name_of(claim), volume, policy))
    if policy == "Delete":
        radius.take("PersistentVolume", volume)


async def _services_deleted(services: list[Obj], namespace: str, reader: Reader, radius: BlastRadius) -> None:
    pods = await reader.items(PODS.path(namespace)) if namespace else []
    for svc in services:
        selector = (svc.get("spec") or {}).get("selector")
        ready = sum(1 for p in pods if kube.pod_ready(p) and kube.map_selects(selector, kube.labels_of(p)))
        radius.services.append(ServiceLoss(namespace, kube.name_of(svc), ready, 0, deleted=True))


async def _ingresses_deleted(ingresses: list[Obj], namespace: str, reader: Reader, radius: BlastRadius) -> None:
    if not namespace:
        return
    services = {kube.name_of(s): s for s in await reader.items(SERVICES.path(namespace))}
    pods = await reader.items(PODS.path(namespace))
    for ing in ingresses:
        spec = ing.get("spec") or {}
        backends = [spec.get("defaultBackend") or {}] + [p.get("backend") or {} for rule in spec.get("rules") or []
                                                           for p in ((rule.get("http") or {}).get("paths") or [])]
        for name in sorted({str((b.get("service") or {}).get("name")) for b in backends if b.get("service")}):
            selector = ((services.get(name) or {}).get("spec") or {}).get("selector")
            ready = sum(1 for p in pods if kube.pod_ready(p) and kube.map_selects(selector, kube.labels_of(p)))
            radius.routes.append(RouteLoss(kube.name_of(ing), name, ready))


# -- pods that go ------------------------------------------------------------------------------

async def _pod_losses(removed: list[Obj], reader: Reader, radius: BlastRadius) -> None:
    """What the pods that go take from their workloads, Services and disruption budgets."""
    by_ns: dict[str, list[Obj]] = {}
    for pod in removed:
        by_ns.setdefault(str(kube.meta(pod).get("namespace", "")), []).append(pod)
    for ns, gone in sorted(by_ns.items()):
        pods = await reader.items(PODS.path(ns))
        gone_uids = {kube.uid_of(p) for p in gone}
        # By uid: a namespace may hold thousands of pods, and comparing pods as dicts is quadratic.
        ready_gone = {kube.uid_of(p) for p in pods if kube.uid_of(p) in gone_uids and kube.pod_ready(p)}
        owners = await _workload_of(pods, ns, reader)
        services = await reader.items(SERVICES.path(ns))
        behind: dict[tuple[str, str], list[str]] = {}
        for svc in services:
            selector = (svc.get("spec") or {}).get("selector")
            selected = [p for p in pods if kube.map_selects(selector, kube.labels_of(p))]
            before = sum(1 for p in selected if kube.pod_ready(p))
            lost = sum(1 for p in selected if kube.uid_of(p) in ready_gone)
            for p in selected:
                behind.setdefault(owners.get(kube.uid_of(p), ("Pod", kube.name_of(p))), []).append(kube.name_of(svc))
            if lost:
                radius.services.append(ServiceLoss(ns, kube.name_of(svc), before, before - lost))
        workloads: dict[tuple[str, str], list[Obj]] = {}
        for p in pods:
            workloads.setdefault(owners.get(kube.uid_of(p), ("Pod", kube.name_of(p))), []).append(p)
        for (kind, name), members in sorted(workloads.items()):
            lost = sum(1 for p in members if kube.uid_of(p) in ready_gone)
            if not lost:
                continue
            before = sum(1 for p in members if kube.pod_ready(p))
            radius.workloads.append(WorkloadLoss(kind, ns, name, before, before - lost,
                                                 sorted(set(behind.get((kind, name), [])))))
        await _budgets(pods, ready_gone, ns, reader, radius)


async def _budgets(pods: list[Obj], ready_gone: set[str], ns: str, reader: Reader, radius: BlastRadius) -> None:
    """READY_GONE: the uids of the ready pods the change removes."""
    for pdb in await reader.items(PDBS.path(ns)):
        spec = pdb.get("spec") or {}
        selected = [p for p in pods if kube.label_selector_selects(spec.get("selector"), kube.labels_of(p))]
        lost = sum(1 for p in selected if kube.uid_of(p) in ready_gone)
        if not lost:
            continue
        status = pdb.get("status") or {}
        healthy = status.get("currentHealthy")
        if not isinstance(healthy, int):
            healthy = sum(1 for p in selected if kube.pod_ready(p))
        desired = status.get("desiredHealthy")
        if "minAvailable" in spec:
            rule = f"minAvailable {spec['minAvailable']}"
            computed = kube.scaled(spec["minAvailable"], len(selected))
        elif "maxUnavailable" in spec:
            rule = f"maxUnavailable {spec['maxUnavailable']}"
            most = kube.scaled(spec["maxUnavailable"], len(selected))
            computed = None if most is None else max(0, len(selected) - most)
        else:
            rule, computed = "no budget set", len(selected)
        if not isinstance(desired, int):
            desired = computed if computed is not None else len(selected)
        radius.budgets.append(BudgetLoss(ns, kube.name_of(pdb), healthy, healthy - lost, desired, rule))


async def _workload_of(pods: list[Obj], ns: str, reader: Reader) -> dict[str, tuple[str, str]]:
    """Each pod's workload (pod uid -> (kind, name)): its controller, or the Deployment behind its ReplicaSet."""
    out: dict[str, tuple[str, str]] = {}
    replicasets: dict[str, Obj] | None = None
    for pod in pods:
        ref = kube.controller_ref(pod)
        if ref is None:
            continue
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        if kind == "ReplicaSet":
            if replicasets is None:
                replicasets = {kube.uid_of(rs): rs for rs in await reader.items(REPLICASETS.path(ns))}
            rs = replicasets.get(str(ref.get("uid", "")))
            top = kube.controller_ref(rs) if rs is not None else None
            if top is not None and top.get("kind") == "Deployment":
                kind, name = "Deployment", str(top.get("name", ""))
        out[kube.uid_of(pod)] = (kind, name)
    return out


# -- writes ------------------------------------------------------------------------------------

async def _writes(change: Change, reader: Reader, radius: BlastRadius, fields: bool) -> None:
    info = change.info
    new = change.new or {}
    live = await reader.get(_object_path(info)) if info.verb != "create" else None
    if live is not None and (owner := protection.gitops_owner(live)):
        radius.managed_by.append(owner)
    kind = SCALABLE.get((info.api_group, info.resource))
    if kind and info.subresource in ("", "scale") and live is not None:
        await _scale(kind, info, live, new, reader, radius)
    if info.group_resource == "nodes" and info.subresource == "" and live is not None:
        await _node(live, new, reader, radius)
    if fields and info.verb in ("update", "patch") and live is not None and change.method:
        query = change.query + ("&" if change.query else "") + "dryRun=All"
        stored = await reader.dry_run(change.method, info.path, query, change.body, change.content_type)
        current = live if not info.subresource else await reader.get(info.path)
        radius.fields = kube.changed_paths(current or {}, stored if isinstance(stored, dict) else {})


async def _scale(kind: str, info: RequestInfo, live: Obj, new: Obj, reader: Reader, radius: BlastRadius) -> None:
    after = (new.get("spec") or {}).get("replicas")
    before = (live.get("spec") or {}).get("replicas", 1)
    if not isinstance(after, int) or isinstance(after, bool) or not isinstance(before, int) or after >= before:
        return
    ns = info.namespace
    pods = await reader.items(PODS.path(ns))
    owners = await _workload_of(pods, ns, reader)
    mine = [p for p in pods if owners.get(kube.uid_of(p)) == (kind, kube.name_of(live))]
    if mine:
        ready_before = sum(1 for p in mine if kube.pod_ready(p))
    else:
        ready_before = int((live.get("status") or {}).get("readyReplicas") or 0)
    ready_after = min(ready_before, after)
    radius.replicas = ReplicaChange(kind, ns, kube.name_of(live), before, after, ready_before, ready_after)
    # Which pods go: a StatefulSet's highest ordinals; a ReplicaSet's unready pods first, as its controller picks.
    if kind == "StatefulSet":
        order = sorted(mine, key=lambda p: _ordinal(kube.name_of(p)), reverse=True)
    else:
        order = sorted(mine, key=lambda p: (kube.pod_ready(p), kube.name_of(p)))
    going = order[:max(0, len(mine) - after)]
    for pod in going:
        radius.take("Pod", kube.name_of(pod))
    if going:
        await _pod_losses(going, reader, radius)


def _ordinal(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


async def _node(live: Obj, new: Obj, reader: Reader, radius: BlastRadius) -> None:
    name = kube.name_of(live)
    cordons = bool((new.get("spec") or {}).get("unschedulable")) and not (live.get("spec") or {}).get("unschedulable")
    old_taints = {(t.get("key"), t.get("value"), t.get("effect")) for t in (live.get("spec") or {}).get("taints") or []
                  if isinstance(t, dict)}
    added = [t for t in (new.get("spec") or {}).get("taints") or [] if isinstance(t, dict)
             and t.get("effect") == "NoExecute" and (t.get("key"), t.get("value"), t.get("effect")) not in old_taints]
    if cordons:
        nodes = await reader.items(NODES.path())
        zone = kube.labels_of(live).get(kube.ZONE_LABEL, "")
        down = [n for n in nodes if (n.get("spec") or {}).get("unschedulable")]
        in_zone = [n for n in nodes if zone and kube.labels_of(n).get(kube.ZONE_LABEL) == zone]
        radius.nodes = NodeChange(name, zone, len(down), len(down) + 1, len(nodes),
                                  sum(1 for n in in_zone if (n.get("spec") or {}).get("unschedulable")) + 1 if zone
                                  else 0, len(in_zone))
    if added:
        on_node = await reader.items(PODS.path(), fieldSelector=f"spec.nodeName={name}")
        evicted = [p for p in on_node if not all(kube.tolerates(p, t) for t in added)]
        for pod in evicted:
            radius.take("Pod", f"{kube.meta(pod).get('namespace')}/{kube.name_of(pod)}")
        if evicted:
            await _pod_losses(evicted, reader, radius)

