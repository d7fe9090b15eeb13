"""Who is calling the emulator: bearer tokens or client certificates, then impersonation.

Like kube-apiserver, the caller authenticates first; `Impersonate-*` headers then switch the
identity, but only for callers allowed to impersonate (in the emulator: a per-credential flag,
standing in for an RBAC `impersonate` grant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import unquote

from multidict import CIMultiDictProxy

from .store import ApiError


@dataclass(frozen=True)
class UserInfo:
    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


@dataclass(frozen=True)
class Credential:
    user: UserInfo
    may_impersonate: bool = False


def _with_authenticated(groups: tuple[str, ...]) -> tuple[str, ...]:
    return groups if "system:authenticated" in groups else groups + ("system:authenticated",)


def from_certificate(peercert: dict[str, Any] | None) -> UserInfo | None:
    """A verified client certificate: CN is the user, O entries are groups (as kube-apiserver)."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return UserInfo(cn, _with_authenticated(tuple(orgs))) if cn else None


def authenticate(headers: CIMultiDictProxy[str], peercert: dict[str, Any] | None,
                 tokens: Mapping[str, Credential],
                 cert_impersonators: frozenset[str]) -> tuple[Credential, UserInfo]:
    """(the authenticated credential, the effective user after impersonation)."""
    auth = headers.get("Authorization", "")
    cred: Credential | None = None
    if auth:
        scheme, _, token = auth.partition(" ")
        cred = tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if cred is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
    else:
        cert_user = from_certificate(peercert)
        if cert_user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        cred = Credential(cert_user, cert_user.username in cert_impersonators)
    return cred, impersonate(headers, cred)


def impersonate(headers: CIMultiDictProxy[str], cred: Credential) -> UserInfo:
    user = headers.get("Impersonate-User")
    groups = tuple(headers.getall("Impersonate-Group", ()))
    uid = headers.get("Impersonate-Uid", "")
    extra: dict[str, list[str]] = {}
    for name, value in headers.items():
        if name.lower().startswith("impersonate-extra-"):
            extra.setdefault(unquote(name[len("impersonate-extra-"):].lower()), []).append(value)
    if user is None:
        if groups or uid or extra:
            raise ApiError(500, "requested impersonation of groups, uid or extra without "
                                "impersonating a user", "InternalError")
        return cred.user
    if not cred.may_impersonate:
        raise ApiError(403, f'users "{user}" is forbidden: User "{cred.user.username}" cannot '
                            'impersonate resource "users" in API group "" at the cluster scope',
                       "Forbidden", {"name": user, "kind": "users"})
    groups = groups if user == "system:anonymous" else _with_authenticated(groups)
    return UserInfo(user, groups, uid, {k: tuple(v) for k, v in extra.items()})
