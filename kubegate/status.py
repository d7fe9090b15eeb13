"""Kubernetes `metav1.Status` bodies: the one shape every error takes on the wire.

kubectl prints `Error from server (<Reason>): <message>` only when the body is a Status whose
`code` equals the HTTP status; anything else (HTML, plain text, a drifting code) shows up as
"unknown". Both the gateway and the emulator build their errors here.
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict

# The reason kube-apiserver uses for each HTTP code it returns (k8s.io/apimachinery metav1.StatusReason).
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class StatusDetails(TypedDict, total=False):
    name: str
    group: str
    kind: str
    uid: str
    causes: list[dict[str, str]]
    retryAfterSeconds: int


class Status(TypedDict):
    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    status: str
    message: str
    reason: NotRequired[str]
    details: NotRequired[StatusDetails]
    code: int


def failure(
    code: int,
    message: str,
    *,
    reason: str | None = None,
    details: StatusDetails | None = None,
) -> Status:
    body: Status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def success(details: StatusDetails | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        body["details"] = details
    return body


def encode(body: Status | dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
