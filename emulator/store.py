"""The emulator's object store: one global resourceVersion, an event history for watches, and logs.

Everything runs on one asyncio loop, so the store is plain synchronous code: a watch subscribes
and takes its snapshot in the same step, and no event can slip between the two.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import re
import secrets
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import selectors
from .resources import Registry, ResourceType

Obj = dict[str, Any]

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# The alphabet and length of apiserver's generated-name suffixes (apimachinery util/rand.String):
# no vowels, no look-alikes.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _generated_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


class ApiError(Exception):
    """An error kube-apiserver would answer with a Status of this code and reason."""

    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.reason, self.details = code, message, reason, details


def _qualified(rt: ResourceType) -> str:
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{_qualified(rt)} "{name}" not found', "NotFound",
                    {"name": name, "group": rt.group, "kind": rt.plural})


def now_rfc3339(clock: Callable[[], float]) -> str:
    return dt.datetime.fromtimestamp(clock(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    rv: int
    group: str
    plural: str
    obj: Obj
    old: Obj | None = None


@dataclass(eq=False)  # compared and hashed by identity: each watch is its own subscriber
class Watcher:
    group: str
    plural: str
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)


class Store:
    def __init__(self, registry: Registry, *, history: int = 1000,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.registry = registry
        self.clock = clock or time.time
        self.rv = 1
        self.compacted_rv = 1  # a watch from an older version answers 410 Gone
        self.history = history
        self.events: deque[Event] = deque()
        self.watchers: set[Watcher] = set()
        self.objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self.logs: dict[tuple[str, str, str], list[str]] = {}
        self.log_followers: dict[tuple[str, str, str], set[asyncio.Queue[str | None]]] = {}
        self.controllers: Any = None  # controllers.Controllers, when workloads are to own pods

    def _settle(self, rt: ResourceType, ns: str) -> None:
        if self.controllers is not None:
            self.controllers.settle(rt.plural, ns)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, kind: str, rt: ResourceType, obj: Obj, old: Obj | None = None) -> None:
        ev = Event(kind, int(obj["metadata"]["resourceVersion"]), rt.group, rt.plural,
                   copy.deepcopy(obj), old)
        self.events.append(ev)
        while len(self.events) > self.history:
            self.compacted_rv = self.events.popleft().rv
        for w in self.watchers:
            if (w.group, w.plural) == (rt.group, rt.plural):
                w.queue.put_nowait(ev)

    def compact(self) -> None:
        """Forget the whole event history, as etcd compaction would: older watches get 410."""
        self.events.clear()
        self.compacted_rv = self.rv

    def subscribe(self, rt: ResourceType) -> Watcher:
        w = Watcher(rt.group, rt.plural)
        self.watchers.add(w)
        return w

    def unsubscribe(self, w: Watcher) -> None:
        self.watchers.discard(w)

    def events_since(self, rt: ResourceType, rv: int) -> list[Event]:
        if rv < self.compacted_rv:
            raise ApiError(410, f"too old resource version: {rv} ({self.compacted_rv})", "Expired")
        return [e for e in self.events if e.rv > rv and (e.group, e.plural) == (rt.group, rt.plural)]

    def _table(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self.objects.setdefault((rt.group, rt.plural), {})

    def _present(self, rt: ResourceType, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        out["apiVersion"], out["kind"] = rt.api_version, rt.kind
        if rt.plural == "poddisruptionbudgets":
            out["status"] = self.disruption_status(out)
        return out

    # -- reads ---------------------------------------------------------------------------------

    def get(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self._table(rt).get((ns, name))
        if obj is None:
            raise not_found(rt, name)
        return self._present(rt, obj)

    def iter_matching(self, rt: ResourceType, ns: str | None,
                      labels: selectors.LabelSelector | None,
                      fields: selectors.FieldSelector | None) -> Iterator[tuple[tuple[str, str], Obj]]:
        for key in sorted(self._table(rt)):
            obj = self._table(rt)[key]
            if ns and key[0] != ns:
                continue
            if labels and not labels.matches(obj["metadata"].get("labels")):
                continue
            if fields and not fields.matches(obj):
                continue
            yield key, obj

    def list_objects(self, rt: ResourceType, ns: str | None, labels: selectors.LabelSelector | None = None,
             fields: selectors.FieldSelector | None = None) -> list[Obj]:
        return [self._present(rt, o) for _, o in self.iter_matching(rt, ns, labels, fields)]

    def namespace_exists(self, ns: str) -> bool:
        return ("", ns) in self._table(self._ns_type())

    def _ns_type(self) -> ResourceType:
        rt = self.registry.lookup("", "v1", "namespaces")
        assert rt is not None
        return rt

    # -- writes --------------------------------------------------------------------------------

    def _validate_name(self, rt: ResourceType, name: str) -> None:
        pattern, limit = (_LABEL_NAME_RE, 63) if rt.plural == "namespaces" else (_NAME_RE, 253)
        if not name or len(name) > limit or not pattern.match(name):
            raise ApiError(422, f'{rt.kind} "{name}" is invalid: metadata.name: Invalid value: '
                                f'"{name}": a lowercase RFC 1123 name must consist of lower case '
                                "alphanumeric characters, '-' or '.'", "Invalid",
                           {"name": name, "group": rt.group, "kind": rt.kind})

    def create(self, rt: ResourceType, ns: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object", "BadRequest")
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            meta["name"] = _generated_name(str(meta["generateName"]))
        name = meta.get("name", "")
        if not name:
            raise ApiError(422, f"{rt.kind} is invalid: metadata.name: Required value: name or "
                                "generateName is required", "Invalid")
        self._validate_name(rt, name)
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(400, "the namespace of the provided object does not match the "
                                    "namespace sent on the request", "BadRequest")
            if not self.namespace_exists(ns):
                raise ApiError(404, f'namespaces "{ns}" not found', "NotFound",
                               {"name": ns, "kind": "namespaces"})
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
            ns = ""
        table = self._table(rt)
        # kube-apiserver (RetryGenerateName, on by default since 1.32) tries a generated name up to
        # 8 times before answering 409: a ReplicaSet of thousands of pods does not trip on a clash.
        retries = 7 if generated else 0
        while retries and (ns, name) in table:
            name = meta["name"] = _generated_name(str(meta["generateName"]))
            retries -= 1
        if (ns, name) in table:
            raise ApiError(409, f'{_qualified(rt)} "{name}" already exists', "AlreadyExists",
                           {"name": name, "group": rt.group, "kind": rt.plural})
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339(self.clock)
        for drop in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(drop, None)
        if "spec" in obj:
            meta["generation"] = 1
        if rt.plural == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        self._default(rt, obj)
        if rt.runs:
            obj["status"] = self._synthetic_status(rt, obj)
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return self._present(rt, obj)
        meta["resourceVersion"] = self._bump()
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        table[(ns, name)] = obj
        if rt.plural == "pods":
            for c in (obj.get("spec") or {}).get("containers") or []:
                self.append_log(ns, name, c.get("name", ""),
                                f"container {c.get('name')} started (image {c.get('image')})")
        self._emit("ADDED", rt, obj)
        self._settle(rt, ns)
        return self._present(rt, obj)

    def update(self, rt: ResourceType, ns: str, name: str, obj: Obj, *,
               subresource: str | None = None, dry_run: bool = False,
               create_missing: bool = False) -> tuple[Obj, bool]:
        """Replace an object; returns (object, created). Honors the resourceVersion precondition."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise ApiError(400, f"the name of the object ({meta.get('name')}) does not match the "
                                f"name on the URL ({name})", "BadRequest")
        key = (ns if rt.namespaced else "", name)
        old = self._table(rt).get(key)
        if old is None:
            if create_missing and not subresource:
                meta["name"] = name
                return self.create(rt, ns, obj, dry_run=dry_run), True
            raise not_found(rt, name)
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, f'Operation cannot be fulfilled on {_qualified(rt)} "{name}": the '
                                "object has been modified; please apply your changes to the latest "
                                "version and try again", "Conflict",
                           {"name": name, "group": rt.group, "kind": rt.plural})
        if subresource == "status":
            new = copy.deepcopy(old)
            new["status"] = obj.get("status")
        else:
            new = obj
            # Server-owned metadata survives whatever the client sent.
            for keep in ("uid", "creationTimestamp", "generation", "namespace", "deletionTimestamp"):
                if keep in old["metadata"]:
                    meta[keep] = old["metadata"][keep]
                else:
                    meta.pop(keep, None)
            meta["name"] = name
            if rt.has_status() or rt.plural == "namespaces":
                new["status"] = copy.deepcopy(old.get("status"))
            self._default(rt, new)
            if "generation" in meta and self._spec_changed(old, new):
                meta["generation"] += 1
            if rt.runs:
                new["status"] = self._synthetic_status(rt, new, old)
        if new.get("status") is None:
            new.pop("status", None)
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if self._same(old, new):
            return self._present(rt, old), False  # a no-op update keeps its resourceVersion
        if dry_run:
            return self._present(rt, new), False
        new["metadata"]["resourceVersion"] = self._bump()
        self._table(rt)[key] = new
        self._emit("MODIFIED", rt, new, copy.deepcopy(old))
        self._settle(rt, key[0])
        return self._present(rt, new), False

    def delete(self, rt: ResourceType, ns: str, name: str, *, uid: str | None = None,
               rv: str | None = None, dry_run: bool = False, propagation: str | None = None) -> Obj:
        """Delete an object; its dependents (ownerReferences) go with it unless PROPAGATION is Orphan.
        The garbage collector's work is done at once: Foreground and Background differ only in when
        the owner disappears, which nothing here can observe."""
        key = (ns if rt.namespaced else "", name)
        old = self._table(rt).get(key)
        if old is None:
            raise not_found(rt, name)
        if (uid and uid != old["metadata"]["uid"]) or (rv and rv != old["metadata"]["resourceVersion"]):
            raise ApiError(409, f'Operation cannot be fulfilled on {_qualified(rt)} "{name}": '
                                "Precondition failed", "Conflict")
        if dry_run:
            return self._present(rt, old)
        if rt.plural == "namespaces":
            self._cascade_namespace(name)
        del self._table(rt)[key]
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = self._bump()
        gone["metadata"]["deletionTimestamp"] = now_rfc3339(self.clock)
        if rt.plural == "customresourcedefinitions":
            self._drop_crd(gone)
        if rt.plural == "pods":
            self._close_logs(ns, name)
        self._emit("DELETED", rt, gone)
        self._collect_dependents(gone, propagation or "Background")
        if rt.plural == "persistentvolumeclaims":
            self._release_volume(gone)
        self._settle(rt, key[0])
        return self._present(rt, gone)

    def _collect_dependents(self, owner: Obj, propagation: str) -> None:
        """What the garbage collector does after OWNER is deleted: dependents whose only remaining
        owner it was are deleted (with the same propagation), others (and every dependent, when
        orphaning) lose their reference to it."""
        uid, ns = owner["metadata"].get("uid"), owner["metadata"].get("namespace", "")
        for rt in list(self.registry.all()):
            if rt.virtual or (ns and not rt.namespaced):
                continue  # a cluster-scoped object cannot be owned by a namespaced one
            for key, obj in list(self._table(rt).items()):
                if ns and key[0] != ns:
                    continue  # a namespaced owner's dependents live in its namespace
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(isinstance(r, dict) and r.get("uid") == uid for r in refs):
                    continue
                rest = [r for r in refs if not (isinstance(r, dict) and r.get("uid") == uid)]
                if propagation != "Orphan" and not any(self._owner_exists(r, key[0]) for r in rest):
                    self.delete(rt, key[0], key[1], propagation=propagation)
                    continue
                old = copy.deepcopy(obj)
                if rest:
                    obj["metadata"]["ownerReferences"] = rest
                else:
                    obj["metadata"].pop("ownerReferences", None)
                obj["metadata"]["resourceVersion"] = self._bump()
                self._emit("MODIFIED", rt, obj, old)

    def _owner_exists(self, ref: Any, ns: str) -> bool:
        if not isinstance(ref, dict):
            return False
        for rt in self.registry.all():
            if rt.kind == ref.get("kind") and not rt.virtual:
                found = self._table(rt).get((ns if rt.namespaced else "", str(ref.get("name", ""))))
                if found is not None and found["metadata"].get("uid") == ref.get("uid"):
                    return True
        return False

    def _release_volume(self, claim: Obj) -> None:
        """The volume bound to a deleted claim: deleted with its data (reclaim policy Delete, the
        default of dynamically provisioned volumes) or kept as Released (Retain)."""
        pv_type = self.registry.lookup("", "v1", "persistentvolumes")
        if pv_type is None:
            return
        uid = claim["metadata"].get("uid")
        for (_, name), pv in list(self._table(pv_type).items()):
            if ((pv.get("spec") or {}).get("claimRef") or {}).get("uid") != uid:
                continue
            if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Delete") == "Delete":
                self.delete(pv_type, "", name)
            else:
                old = copy.deepcopy(pv)
                pv["status"] = {"phase": "Released"}
                pv["metadata"]["resourceVersion"] = self._bump()
                self._emit("MODIFIED", pv_type, pv, old)

    def disruption_status(self, pdb: Obj) -> Obj:
        """A PodDisruptionBudget's status as the disruption controller computes it from the pods its
        selector selects in its namespace: how many are healthy (Ready), how many must stay."""
        pods_type = self.registry.lookup("", "v1", "pods")
        ns = pdb["metadata"].get("namespace", "")
        spec = pdb.get("spec") or {}
        selected = [p for (pns, _), p in (self._table(pods_type).items() if pods_type else ())
                    if pns == ns and object_selector_matches(spec.get("selector"), p["metadata"].get("labels"))]
        expected = len(selected)
        healthy = sum(1 for p in selected if pod_ready(p))
        if "minAvailable" in spec:
            desired = _scaled(spec["minAvailable"], expected, up=True)
        elif "maxUnavailable" in spec:
            desired = max(0, expected - _scaled(spec["maxUnavailable"], expected, up=True))
        else:
            desired = expected
        return {"observedGeneration": pdb["metadata"].get("generation", 1), "expectedPods": expected,
                "currentHealthy": healthy, "desiredHealthy": desired,
                "disruptionsAllowed": max(0, healthy - desired)}

    def delete_collection(self, rt: ResourceType, ns: str | None,
                          labels: selectors.LabelSelector | None,
                          fields: selectors.FieldSelector | None, *, dry_run: bool = False,
                          propagation: str | None = None) -> list[Obj]:
        keys = [k for k, _ in self.iter_matching(rt, ns, labels, fields)]
        return [self.delete(rt, k[0], k[1], dry_run=dry_run, propagation=propagation)
                for k in keys if k in self._table(rt)]  # a dependent of an earlier one may be gone

    def _cascade_namespace(self, ns: str) -> None:
        for rt in list(self.registry.all()):
            if rt.namespaced and not rt.virtual and self.registry.lookup(rt.group, rt.version, rt.plural):
                for (obj_ns, name) in [k for k in self._table(rt) if k[0] == ns]:
                    self.delete(rt, obj_ns, name)

    def _drop_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        self.registry.remove_group_resource(group, plural)
        self.objects.pop((group, plural), None)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _same(a: Obj, b: Obj) -> bool:
        strip = lambda o: {**o, "metadata": {k: v for k, v in o["metadata"].items()  # noqa: E731
                                             if k not in ("resourceVersion", "managedFields")}}
        return strip(a) == strip(b)

    @staticmethod
    def _spec_changed(old: Obj, new: Obj) -> bool:
        pick = lambda o: {k: v for k, v in o.items()  # noqa: E731
                          if k not in ("metadata", "status", "apiVersion", "kind")}
        return pick(old) != pick(new)

    @staticmethod
    def _default(rt: ResourceType, obj: Obj) -> None:
        spec = obj.get("spec")
        if rt.plural in ("deployments", "replicasets", "statefulsets") and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
        if rt.plural == "secrets":
            obj.setdefault("type", "Opaque")

    def _synthetic_status(self, rt: ResourceType, obj: Obj, old: Obj | None = None) -> Obj:
        """What the controllers and kubelet would report once everything is up: all ready."""
        spec = obj.get("spec") or {}
        generation = obj["metadata"].get("generation", 1)
        if rt.plural == "pods":
            started = obj["metadata"].get("creationTimestamp") or now_rfc3339(self.clock)
            return {
                "phase": "Running",
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": started}
                               for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                "hostIP": "10.0.0.1",
                "podIP": "10.244.0.10",
                "startTime": started,
                "containerStatuses": [
                    {"name": c.get("name", ""), "image": c.get("image", ""), "ready": True,
                     "started": True, "restartCount": 0, "imageID": "",
                     "state": {"running": {"startedAt": started}}}
                    for c in spec.get("containers") or []
                ],
            }
        if rt.plural == "daemonsets":
            n = len(self._table(self.registry.lookup("", "v1", "nodes") or rt))
            return {"desiredNumberScheduled": n, "currentNumberScheduled": n, "numberReady": n,
                    "numberAvailable": n, "updatedNumberScheduled": n, "numberMisscheduled": 0,
                    "observedGeneration": generation}
        replicas = spec.get("replicas", 1)
        status: Obj = {"replicas": replicas, "observedGeneration": generation}
        if replicas:
            status.update(readyReplicas=replicas, availableReplicas=replicas, updatedReplicas=replicas)
        if rt.plural == "replicasets":
            status["fullyLabeledReplicas"] = replicas
        if rt.plural == "statefulsets":
            status.update(currentReplicas=replicas, updateRevision="r1", currentRevision="r1")
        if rt.plural == "deployments":
            # Available since its pod template last changed (a scale keeps the time), as the
            # deployment controller's condition says once the rollout is done.
            same = old is not None and (old.get("spec") or {}).get("template") == spec.get("template")
            kept = next((c for c in ((old or {}).get("status") or {}).get("conditions") or []
                         if c.get("type") == "Available"), None) if same else None
            since = kept["lastTransitionTime"] if kept else now_rfc3339(self.clock)
            status["conditions"] = [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "lastTransitionTime": since, "lastUpdateTime": since},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "lastTransitionTime": since, "lastUpdateTime": since}]
        return status

    # -- pod logs ------------------------------------------------------------------------------

    def append_log(self, ns: str, pod: str, container: str, line: str) -> None:
        key = (ns, pod, container)
        stamped = f"{now_rfc3339(self.clock)} {line}"
        self.logs.setdefault(key, []).append(stamped)
        for q in self.log_followers.get(key, ()):
            q.put_nowait(stamped)

    def follow_log(self, ns: str, pod: str, container: str) -> asyncio.Queue[str | None]:
        q: asyncio.Queue[str | None] = asyncio.Queue()
        self.log_followers.setdefault((ns, pod, container), set()).add(q)
        return q

    def unfollow_log(self, ns: str, pod: str, container: str, q: asyncio.Queue[str | None]) -> None:
        self.log_followers.get((ns, pod, container), set()).discard(q)

    def _close_logs(self, ns: str, pod: str) -> None:
        for key in [k for k in self.logs if k[:2] == (ns, pod)]:
            del self.logs[key]
        for key, followers in self.log_followers.items():
            if key[:2] == (ns, pod):
                for q in followers:
                    q.put_nowait(None)  # the container is gone: end the stream


def pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def object_selector_matches(selector: Any, labels: dict[str, str] | None) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions) against LABELS. An empty selector
    selects everything; a missing one (None) selects nothing, as for PodDisruptionBudgets."""
    if not isinstance(selector, dict):
        return False
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _scaled(value: Any, total: int, *, up: bool) -> int:
    """An IntOrString of a PodDisruptionBudget: a count, or a percentage of TOTAL rounded up."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return total
        return -(-pct * total // 100) if up else pct * total // 100
    return int(value) if isinstance(value, int) else total
