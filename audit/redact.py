"""What never reaches an audit sink: secret values, tokens, credentials in query strings.

Applied to every request and response object and every request URI before an event is written,
and to what approval tickets keep:
- Every body of a request on the `secrets` resource, by resource, not by shape: whatever it is
  (an object, a list, a JSON patch, a merge, strategic-merge or apply patch, a Table), only its
  structure stays — apiVersion, kind, type, the object's name, namespace, labels and owners, the
  keys of `data`/`stringData` and of the annotations, a JSON patch's `op` and `path` — and every
  value becomes REDACTED (the `last-applied-configuration` annotation, which repeats the Secret,
  included); managedFields go. Objects of kind Secret elsewhere get the same;
- TokenRequests (`serviceaccounts/token`, by resource or kind): `status.token`; anything under a key
  named in SECRET_KEYS (`token`, `password`…);
- configured fields (`audit.redact_fields`, dotted paths such as `spec.template.spec.env`);
- query parameters that carry credentials (`access_token`, `token`, `id_token`…).
Objects larger than the configured size are left out of the event, with a marker saying so.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote_plus

REDACTED = "<redacted by kubegate>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SECRET_KEYS = frozenset({"token", "password", "passwd", "secret", "client-secret", "clientSecret", "privateKey",
                         "private_key", "bearerToken", "idToken", "refreshToken", "accessToken"})
QUERY_SECRETS = frozenset({"access_token", "token", "id_token", "refresh_token", "client_secret", "password",
                           "authorization", "code"})


def _redact_values(mapping: Any) -> Any:
    return {k: REDACTED for k in mapping} if isinstance(mapping, dict) else REDACTED


# What stays of a Secret's body: its structure, never a value that could be (or repeat) its data.
_KEPT = frozenset({"apiVersion", "kind", "type", "immutable", "op", "path", "from"})
_KEPT_METADATA = frozenset({"name", "namespace", "generateName", "uid", "resourceVersion", "generation",
                            "creationTimestamp", "deletionTimestamp", "labels", "ownerReferences", "finalizers"})


def secret_skeleton(value: Any) -> Any:
    """A Secret's body (any shape) with every value REDACTED but its structure (see above)."""
    if isinstance(value, list):
        return [secret_skeleton(v) for v in value]
    if not isinstance(value, dict):
        return None if value is None else REDACTED
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _KEPT and isinstance(item, (str, bool)):
            out[key] = item
        elif key == "metadata" and isinstance(item, dict):
            out[key] = {k: (v if k in _KEPT_METADATA else _redact_values(v)) for k, v in item.items()
                        if k != "managedFields"}
        elif key in ("data", "stringData") and isinstance(item, dict):
            out[key] = _redact_values(item)
        else:
            out[key] = secret_skeleton(item)
    return out


def _walk(value: Any) -> Any:
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("kind") == "Secret":
        return secret_skeleton(value)
    if value.get("kind") == "TokenRequest" and isinstance(value.get("status"), dict):
        value = {**value, "status": {**value["status"], "token": REDACTED}}
    return {k: (REDACTED if k in SECRET_KEYS and isinstance(v, str) else _walk(v)) for k, v in value.items()}


def _drop_path(obj: Any, parts: list[str]) -> Any:
    if not isinstance(obj, dict) or not parts:
        return obj
    head, rest = parts[0], parts[1:]
    if head not in obj:
        return obj
    return {**obj, head: REDACTED if not rest else _drop_path(obj[head], rest)}


def secret_bearing(resource: str, subresource: str = "") -> bool:
    """Whether every body of a request on this resource is redacted whole (Secrets, TokenRequests)."""
    return resource == "secrets" or (resource == "serviceaccounts" and subresource == "token")


def redact(obj: Any, *, resource: str = "", subresource: str = "", fields: tuple[str, ...] = ()) -> Any:
    """A copy of `obj` with every secret value replaced (the input is not changed)."""
    if resource == "secrets":
        obj = secret_skeleton(obj)
    elif resource == "serviceaccounts" and subresource == "token" and isinstance(obj, dict) \
            and isinstance(obj.get("status"), dict):
        obj = {**obj, "status": {**obj["status"], "token": REDACTED}}
    out = _walk(obj)
    for path in fields:
        if isinstance(out, dict) and isinstance(out.get("items"), list):
            out = {**out, "items": [_drop_path(i, path.split(".")) for i in out["items"]]}
        out = _drop_path(out, path.split("."))
    return out


def without_managed_fields(obj: Any) -> Any:
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        if isinstance(obj.get("items"), list):
            obj = {**obj, "items": [without_managed_fields(i) for i in obj["items"]]}
    return obj


def redact_uri(uri: str) -> str:
    """A request URI with the values of credential-carrying query parameters replaced."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.lower() in QUERY_SECRETS for k, _ in pairs):
        return uri
    return path + "?" + "&".join(f"{quote_plus(k)}={'REDACTED' if k.lower() in QUERY_SECRETS else quote_plus(v)}"
                                 for k, v in pairs)


def bounded(obj: Any, max_bytes: int) -> tuple[Any, str]:
    """(the object, "") if its JSON is within max_bytes, else (None, a marker saying how large)."""
    size = len(json.dumps(obj, separators=(",", ":"), default=str))
    if size <= max_bytes:
        return obj, ""
    return None, f"left out: {size} bytes, more than the {max_bytes} the audit policy records"
