"""Who made a request, once authenticated."""

from __future__ import annotations

from dataclasses import dataclass, field

AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    issuer: str = ""      # which token issuer vouched for it
    session: str = ""     # the token's session id (webshell sessions, issued tokens)

    def upstream_groups(self) -> tuple[str, ...]:
        """The groups the upstream sees: always with system:authenticated, as kube-apiserver adds it."""
        return self.groups if AUTHENTICATED in self.groups else (*self.groups, AUTHENTICATED)

    def to_audit(self) -> dict[str, object]:
        out: dict[str, object] = {"username": self.user, "groups": list(self.upstream_groups())}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out
