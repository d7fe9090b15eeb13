"""What never reaches an audit sink: secret values, tokens, credentials in query strings.

Applied to every request and response object and every request URI before an event is written:
- Secrets (by kind, or any body sent to the `secrets` resource, patches included): the values of
  `data` and `stringData` (keys stay, so an auditor sees what changed) and the
  `kubectl.kubernetes.io/last-applied-configuration` annotation, which repeats them;
- TokenRequests: `status.token`; anything under a key named in SECRET_KEYS (`token`, `password`…);
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


def _secret(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    for key in ("data", "stringData"):
        if key in out:
            out[key] = _redact_values(out[key])
    meta = out.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict) and LAST_APPLIED in meta["annotations"]:
        out["metadata"] = {**meta, "annotations": {**meta["annotations"], LAST_APPLIED: REDACTED}}
    return out


def _walk(value: Any, secret_resource: bool) -> Any:
    if isinstance(value, list):
        return [_walk(v, secret_resource) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("kind") == "Secret" or (secret_resource and ("data" in value or "stringData" in value)):
        value = _secret(value)
    if value.get("kind") == "TokenRequest" and isinstance(value.get("status"), dict):
        value = {**value, "status": {**value["status"], "token": REDACTED}}
    if secret_resource and "op" in value and "value" in value:  # a JSON patch operation on a Secret
        value = {**value, "value": REDACTED}
    return {k: (REDACTED if k in SECRET_KEYS and isinstance(v, str) else _walk(v, secret_resource))
            for k, v in value.items()}


def _drop_path(obj: Any, parts: list[str]) -> Any:
    if not isinstance(obj, dict) or not parts:
        return obj
    head, rest = parts[0], parts[1:]
    if head not in obj:
        return obj
    return {**obj, head: REDACTED if not rest else _drop_path(obj[head], rest)}


def redact(obj: Any, *, resource: str = "", fields: tuple[str, ...] = ()) -> Any:
    """A copy of `obj` with every secret value replaced (the input is not changed)."""
    out = _walk(obj, resource == "secrets")
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
