"""A patch judged by its result: the object the apiserver will have once the patch is applied.

A rule about `spec.replicas` must see what a patch DOES, not what it says: a JSON patch can `move`
or `copy` a 0 into `spec.replicas` without naming the value; a patch that adds a subject to the
existing `cluster-admin` binding carries no `roleRef`. So rules and webhooks are given the live
object (read as the caller) with the patch applied, by the patch type's own rules:

- JSON patch (RFC 6902, all six operations): PyPI `jsonpatch`, the library made for it;
- JSON merge patch (RFC 7386);
- strategic merge patch: maps merge, lists of objects merge by the `patchMergeKey` of the
  built-in types (MERGE_KEYS: containers, env, volumes, ports... of Pods and everything with a pod
  template, Services, metadata), lists with `patchStrategy: merge` of strings union, other lists
  are replaced; the directives `$patch` (replace, delete, merge), `$retainKeys`,
  `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` (order only) are honoured;
  any other `$` directive cannot be modelled (PatchError);
- server-side apply: the applied configuration merged over the live object the same way (fields
  other managers own stay). Not modelled: fields this manager applied before and now omits,
  which the apiserver removes (managedFields are not tracked here).

What cannot be modelled raises PatchError: the caller then treats the body as unreadable and the
rules take their conservative outcome.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

# patchMergeKey of list fields in k8s.io/api's built-in types (by field name; `ports` depends on
# where it is, see _merge_key).
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "imagePullSecrets": "name",
    "hostAliases": "ip", "conditions": "type", "ownerReferences": "uid", "taints": "key",
    "topologySpreadConstraints": "topologyKey", "resourceClaims": "name", "schedulingGates": "name",
}
# Lists of strings whose patchStrategy is merge: a patch adds to them.
MERGED_PRIMITIVES = frozenset({"finalizers"})

PATCH_KINDS = frozenset({"json-patch", "merge-patch", "strategic-merge-patch", "apply-yaml"})


class PatchError(ValueError):
    """The patch cannot be applied, or not the way the apiserver would apply it."""


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # containers' ports merge by containerPort, a Service's by port
        objects = [i for i in items if isinstance(i, dict)]
        return "containerPort" if any("containerPort" in i for i in objects) else "port"
    return MERGE_KEYS.get(field)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _smp_list(field: str, live: list[Any], patch: list[Any]) -> list[Any]:
    if field in MERGED_PRIMITIVES and all(not isinstance(v, (dict, list)) for v in patch):
        return list(live) + [v for v in patch if v not in live]
    key = _merge_key(field, live + patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        if any(isinstance(i, dict) and "$patch" in i for i in patch):
            raise PatchError(f"a $patch directive in the list {field!r}, which has no merge key here")
        return copy.deepcopy(patch)  # no patchStrategy: the list is replaced
    if any(i.get("$patch") == "replace" for i in patch):
        return [strategic_merge({}, {k: v for k, v in i.items() if k != "$patch"}) for i in patch
                if i.get("$patch") != "replace"]
    out = [copy.deepcopy(i) for i in live]
    for item in patch:
        if key not in item:
            raise PatchError(f"an element of {field!r} has no merge key {key!r}")
        found = next((n for n, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item[key]), None)
        directive = item.get("$patch", "merge")
        if directive == "delete":
            if found is not None:
                del out[found]
            continue
        if directive != "merge":
            raise PatchError(f"unknown $patch directive {directive!r} in {field!r}")
        body = {k: v for k, v in item.items() if k != "$patch"}
        if found is None:
            out.append(strategic_merge({}, body))
        else:
            out[found] = strategic_merge(out[found], body)
    return out


def strategic_merge(live: Any, patch: Any) -> Any:
    """A strategic merge patch (or an applied configuration) over `live`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"unknown $patch directive {directive!r}")
    out = copy.deepcopy(live) if isinstance(live, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue  # order only: no effect on what a rule reads
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if not isinstance(value, list) or not isinstance(out.get(name, []), list):
                raise PatchError(f"{key} needs a list")
            out[name] = [v for v in out.get(name, []) if v not in value]
            continue
        if key.startswith("$"):
            raise PatchError(f"the strategic merge directive {key!r} is not modelled")
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _smp_list(key, out[key], value)
        elif isinstance(value, list):
            out[key] = _smp_list(key, [], value)
        else:
            merged = strategic_merge(out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys needs a list")
        out = {k: v for k, v in out.items() if k in retain}
    return out


def apply(kind: str, live: dict[str, Any] | None, patch: Any) -> dict[str, Any]:
    """The object after `patch` (a decoded body of `kind`) is applied to `live` (None: absent)."""
    if kind == "apply-yaml" and live is None:
        base: dict[str, Any] = {}  # server-side apply creates what does not exist
    elif live is None:
        raise PatchError("the object to patch does not exist")
    else:
        base = live
    try:
        if kind == "json-patch":
            result = jsonpatch.apply_patch(base, patch, in_place=False)
        elif kind == "merge-patch":
            result = merge_patch(base, patch)
        elif kind in ("strategic-merge-patch", "apply-yaml"):
            result = strategic_merge(base, patch)
        else:
            raise PatchError(f"{kind} is not a patch")
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise PatchError(f"the JSON patch cannot be applied: {e}") from None
    if not isinstance(result, dict):
        raise PatchError("the patch does not leave an object")
    return result


def changes(before: Any, after: Any, path: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """What a patch changes, for the approver: [{path, old, new}] of each leaf that differs (a
    missing value is None), at most `limit`, metadata bookkeeping left out."""
    out: list[dict[str, Any]] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(out) >= limit or a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if where == "/metadata" and key in ("resourceVersion", "managedFields", "generation"):
                    continue
                walk(a.get(key), b.get(key), f"{where}/{key}")
            return
        out.append({"path": where or "/", "old": a, "new": b})

    walk(before, after, path)
    return out
