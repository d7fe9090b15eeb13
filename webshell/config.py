"""What the webshell is told by whoever starts it (the gateway's engine builds it from its settings).

The webshell reaches the gateway only over HTTPS, like any kubectl: it knows the gateway's URL and
CA, never its keys or policies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class OidcLogin:
    issuer: str
    client_id: str
    ca_file: str = ""  # CA for the issuer (empty: the system CAs)
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")


@dataclass(frozen=True)
class WebshellConfig:
    host: str
    port: int
    public_url: str  # where browsers reach it (its own origin: cookies and WebSocket Origin checks)
    cert_file: Path
    key_file: Path
    gateway_url: str  # the gateway's API, as kubectl in the terminal reaches it
    gateway_ca_file: Path
    gateway_server_name: str  # the name the gateway's certificate carries (kubeconfig tls-server-name)
    clusters: tuple[str, ...]
    default_cluster: str  # the gateway's default cluster (no /clusters/<name>/ prefix); "": none
    work_dir: Path  # per-session directories (files, home, kubeconfig)
    recordings_dir: Path
    audit_log: Path  # the gateway's live audit log: what the sessions page reads
    kubectl: str
    audit: Callable[[dict[str, Any]], None]  # writes one audit event (the gateway's audit subsystem)
    sandbox: str = "bwrap"  # where terminals' kubectl runs: "bwrap", or "none" (contained by other means)
    check_arguments: bool = True  # False only in the containment tests: the sandbox as the only wall
    oidc: OidcLogin | None = None
    idle_seconds: int = 900
    max_seconds: int = 8 * 3600
    auditor_groups: tuple[str, ...] = ("kubegate:auditors", "kubegate:cluster-admins")
    extra_env: dict[str, str] = field(default_factory=dict)
