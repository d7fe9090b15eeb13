"""Who made a request, once authenticated.

Every part of an identity travels to the cluster as an HTTP header value (Impersonate-User,
-Group, -Uid, -Extra-<key>). A CR or LF in a signed claim would become a header line of its own
(`alice\r\nImpersonate-Group: system:masters`), and whitespace at either end is trimmed by Go's
header parser, so `admin ` would be judged as one user and executed as another. So identity values
must be printable text without surrounding whitespace (`problems`), checked where tokens are
verified and issued and again where headers are built.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

AUTHENTICATED = "system:authenticated"
SYSTEM_PREFIX = "system:"


def value_problem(value: str) -> str:
    """Why `value` cannot be an identity value, or ""."""
    if not value:
        return "is empty"
    if value != value.strip():
        return "has whitespace at either end"
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"contains the control character U+{ord(ch):04X}"
    if len(value) > 1024:
        return "is longer than 1024 characters"
    return ""


def problems(user: str, groups: tuple[str, ...] | list[str] = (), uid: str = "",
             extra: dict[str, tuple[str, ...]] | dict[str, list[str]] | None = None) -> list[str]:
    """Each claim of an identity that is not printable text, named as `claim: why`."""
    found = []
    if why := value_problem(user):
        found.append(f"user {why}")
    found += [f"group {g!r} {why}" for g in groups if (why := value_problem(g))]
    if uid and (why := value_problem(uid)):
        found.append(f"uid {why}")
    for key, values in (extra or {}).items():
        if why := value_problem(key):
            found.append(f"extra key {key!r} {why}")
        found += [f"extra {key!r} value {why}" for v in values if (why := value_problem(v))]
    return found


def system_groups(groups: tuple[str, ...] | list[str]) -> list[str]:
    """The `system:` groups among `groups` that only the cluster may assign (all but system:authenticated)."""
    return [g for g in groups if g.startswith(SYSTEM_PREFIX) and g != AUTHENTICATED]


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    issuer: str = ""      # which token issuer vouched for it
    session: str = ""     # the token's session id (webshell sessions, issued tokens)

    def __post_init__(self) -> None:
        # The last line of defence: no identity with an unprintable value exists, so none can reach
        # a header. Authentication refuses such tokens earlier, with a 401 naming the claim.
        if found := problems(self.user, self.groups, self.uid, self.extra):
            raise ValueError(f"not a usable identity: {'; '.join(found)}")

    def upstream_groups(self) -> tuple[str, ...]:
        """The groups the upstream sees: always with system:authenticated, as kube-apiserver adds it."""
        return self.groups if AUTHENTICATED in self.groups else (*self.groups, AUTHENTICATED)

    def to_audit(self) -> dict[str, object]:
        out: dict[str, object] = {"username": self.user, "groups": list(self.upstream_groups())}
        if self.uid:
            out["uid"] = self.uid
        extra = {k: list(v) for k, v in self.extra.items()}
        if self.session:  # as the cluster sees it too (clusters.forwarding.SESSION_EXTRA)
            extra["kubegate.io/session"] = [self.session]
        if extra:
            out["extra"] = extra
        return out
