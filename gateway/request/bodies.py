"""What a request body says, for rules and risk webhooks: one JSON-like view of every encoding.

kubectl and client-go send JSON objects, JSON merge and strategic merge patches (objects too),
JSON patches (lists of operations), server-side apply bodies (YAML), and Kubernetes protobuf
(typed clients: `kubectl create deployment`). A JSON patch is turned into the object fragment
its add/replace operations would write, so a rule about `spec.replicas` reads it the same way.
What cannot be read is reported, never guessed: rules then apply their conservative outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import decoders, kubeproto


@dataclass(frozen=True)
class Body:
    obj: dict[str, Any] | None  # the object, or the fragment a patch writes; None if unreadable/absent
    kind: str  # "none", "json", "merge-patch", "strategic-merge-patch", "json-patch", "apply-yaml", "yaml", "protobuf"
    error: str = ""  # why it could not be read
    # JSON or YAML that kube-apiserver's Go decoders would read differently, or refuse: the request
    # is refused whole (a 400), since no gate could judge what the apiserver would execute.
    go_refusal: bool = False
    data: Any = None  # the decoded document itself (a JSON patch's list of operations)

    @property
    def readable(self) -> bool:
        return self.obj is not None


NONE = Body(None, "none")


def _json_pointer_set(target: dict[str, Any], pointer: str, value: Any) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    node: Any = target
    for part in parts[:-1]:
        nxt = node.get(part) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    if isinstance(node, dict) and parts:
        node[parts[-1]] = value


def _from_json_patch(ops: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise ValueError("a JSON patch operation needs an op and a path")
        if op.get("op") in ("add", "replace"):
            _json_pointer_set(out, op["path"], op.get("value"))
        elif op.get("op") == "remove":
            _json_pointer_set(out, op["path"], None)
    return out


def read(content_type: str | None, body: bytes) -> Body:
    if not body:
        return NONE
    media = (content_type or "").split(";")[0].strip().lower()
    try:
        if kubeproto.is_protobuf(media):
            decoded = kubeproto.decode(body)
            if decoded.unknown:
                # Go skips fields it does not know, but the apiserver knows them: rules and webhooks
                # would see a partial object. Unreadable, so they take their conservative outcome.
                return Body(None, "protobuf", "the protobuf body has fields kubegate does not model: "
                                              + ", ".join(decoded.unknown[:5]))
            return Body(decoded.obj, "protobuf")
        if media in ("application/apply-patch+yaml", "application/yaml"):
            data = decoders.read_yaml(body)
            kind = "apply-yaml" if media == "application/apply-patch+yaml" else "yaml"
        else:
            data = decoders.read_json(body)
            kind = {"application/json-patch+json": "json-patch",
                    "application/merge-patch+json": "merge-patch",
                    "application/strategic-merge-patch+json": "strategic-merge-patch"}.get(media, "json")
    except decoders.DecodeError as e:
        return Body(None, "unreadable", f"cannot read the {media or 'untyped'} body as kube-apiserver does: {e}",
                    go_refusal=True)
    except (ValueError, kubeproto.ProtobufError) as e:
        return Body(None, "unreadable", f"cannot read the {media or 'untyped'} body: {e}")
    if kind == "json-patch":
        if not isinstance(data, list):
            return Body(None, kind, "a JSON patch must be a list of operations")
        try:
            return Body(_from_json_patch(data), kind, data=data)
        except ValueError as e:
            return Body(None, kind, str(e))
    if not isinstance(data, dict):
        return Body(None, kind, f"the body is a {type(data).__name__}, not an object")
    return Body(data, kind, data=data)


_MISSING = object()


def lookup(obj: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (`spec.replicas`, `metadata.labels.app`), or MISSING."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def lookup_all(obj: Any, path: str) -> list[Any]:
    """Every value at a dotted path whose `[*]` parts stand for each item of a list
    (`spec.taints[*].effect`): the values found, none when the path leads nowhere."""
    nodes: list[Any] = [obj]
    for part in path.split("."):
        each = part.endswith("[*]")
        key = part[:-3] if each else part
        found = []
        for node in nodes:
            if isinstance(node, dict) and key in node:
                value = node[key]
                if not each:
                    found.append(value)
                elif isinstance(value, list):
                    found.extend(value)
        nodes = found
    return nodes


def path_problem(path: str) -> str:
    """Why PATH is not a body path (`a.b`, `a.list[*].c`), or ""."""
    parts = path.split(".")
    if not path or any(not p or ("[" in p and not p.endswith("[*]")) or p.count("[") > 1 or p == "[*]" for p in parts):
        return "write dotted keys, with [*] after a key whose value is a list (spec.taints[*].effect)"
    return ""


def missing(value: Any) -> bool:
    return value is _MISSING
