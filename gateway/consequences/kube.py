"""Small readings of Kubernetes objects the assessment needs, as the controllers read them: label
selectors (a Service's map, a PDB's LabelSelector), pod readiness, taints and tolerations,
controller references, IntOrString budgets."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

ZONE_LABEL = "topology.kubernetes.io/zone"


def meta(obj: Obj) -> Obj:
    found = obj.get("metadata")
    return found if isinstance(found, dict) else {}


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name", ""))


def uid_of(obj: Obj) -> str:
    return str(meta(obj).get("uid", ""))


def labels_of(obj: Obj) -> dict[str, str]:
    found = meta(obj).get("labels")
    return found if isinstance(found, dict) else {}


def owner_refs(obj: Obj) -> list[Obj]:
    refs = meta(obj).get("ownerReferences")
    return [r for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []


def controller_ref(obj: Obj) -> Obj | None:
    return next((r for r in owner_refs(obj) if r.get("controller") is True), None)


def map_selects(selector: Any, labels: dict[str, str]) -> bool:
    """A Service's selector (a plain map): empty or missing selects nothing (no managed endpoints)."""
    if not isinstance(selector, dict) or not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def label_selector_selects(selector: Any, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions). Missing (None) selects nothing;
    empty `{}` selects everything, as for PodDisruptionBudgets in policy/v1."""
    if not isinstance(selector, dict):
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        if not isinstance(e, dict):
            return False
        key, op, values = str(e.get("key", "")), e.get("operator"), e.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def tolerates(pod: Obj, taint: Obj) -> bool:
    """Whether POD tolerates TAINT (the scheduler's and the taint manager's rule)."""
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if not isinstance(t, dict):
            continue
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and str(t.get("value", "")) == str(taint.get("value", "")):
            return True
    return False


def scaled(value: Any, total: int) -> int | None:
    """An IntOrString of a PodDisruptionBudget: a count, or a percentage of TOTAL rounded up."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            return -(-int(value[:-1]) * total // 100)
        except ValueError:
            return None
    return None


def changed_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The field paths that differ between two objects (`spec.template.spec.containers[0].image`),
    deepest first found, without the apiserver's own bookkeeping."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if path in _BOOKKEEPING:
                continue
            out += changed_paths(before.get(key, _ABSENT), after.get(key, _ABSENT), path)
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after)):
            out += changed_paths(b, a, f"{prefix}[{i}]")
        return out
    return [] if before == after else [prefix]


_ABSENT = object()
_BOOKKEEPING = frozenset({"metadata.resourceVersion", "metadata.managedFields", "metadata.generation",
                          "metadata.creationTimestamp", "metadata.uid", "status", "apiVersion", "kind"})
