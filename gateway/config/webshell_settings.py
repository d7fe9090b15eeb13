"""The settings of a webshell that runs as a process of its own (`kubegate webshell -c FILE`).

A webshell of its own holds nothing of the gateway's: not its signing key, not its serving key,
not its settings or cluster credentials. It knows the gateway's URL and CA (to reach it over HTTPS
like any kubectl), the names of the clusters the gateway fronts, its own serving certificate, and
where its sessions, recordings and audit log live. In a cluster that is its own Deployment
(charts/kubegate: `webshell.enabled`), with a ServiceAccount that has no RBAC and no token.

    listen: {host: 0.0.0.0, port: 8444}
    public_url: https://shell.example.com
    tls: {cert_file: /etc/kubegate-webshell/tls/tls.crt, key_file: /etc/kubegate-webshell/tls/tls.key}
    gateway: {url: https://kubegate.kubegate-system.svc, ca_file: /etc/kubegate-webshell/gateway-ca/ca.crt}
    clusters: [hz-1, hz-2]        # the clusters the gateway fronts; hz-1 is its default
    default_cluster: hz-1
    oidc: {issuer: https://dex.example.com, client_id: kubegate-webshell}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .settings import _NESTED, Located, SettingsError, Terminals, _build, _https_url, read, terminal_problems


@dataclass
class ShellListen:
    host: str = "127.0.0.1"
    """Address of the webshell's HTTPS listener."""
    port: int = 8444
    """Its port; 0 picks a free one."""


@dataclass
class ShellTls:
    cert_file: str = ""
    """The webshell's own serving certificate (PEM; a chain after the leaf). Required."""
    key_file: str = ""
    """Its key (PEM). Required."""


@dataclass
class ShellGateway:
    url: str = ""
    """The gateway's API as the webshell (and its terminals' kubectl) reach it: an https URL. Required."""
    ca_file: str = ""
    """The CA that signed the gateway's serving certificate. Required."""
    server_name: str = ""
    """The name the gateway's certificate carries, when the URL's host is not one of them. Default: the URL's host."""


@dataclass
class ShellOidc:
    issuer: str = ""
    """Single sign-on: the issuer (the gateway must trust it too, as one of its oidc[]). Empty: token login only."""
    client_id: str = "kubegate-webshell"
    """The webshell's public client id there; its redirect URI is <public_url>/login/callback."""
    ca_file: str = ""
    """CA for the issuer. Default: the system CAs."""


@dataclass
class WebshellSettings(Terminals, Located):
    """(state_dir holds sessions' directories, recordings and the audit log unless set apart;
    work_dir default: state_dir/sessions)"""

    listen: ShellListen = field(default_factory=ShellListen)
    public_url: str = ""
    """Where browsers reach it. Default: https://<listen.host>:<listen.port>."""
    tls: ShellTls = field(default_factory=ShellTls)
    gateway: ShellGateway = field(default_factory=ShellGateway)
    clusters: list[str] = field(default_factory=list)
    """The names of the clusters the gateway fronts (the first is the one a terminal opens on by default)."""
    default_cluster: str = ""
    """The gateway's default cluster, reached without /clusters/<name>/. Empty: every cluster by its prefix."""
    oidc: ShellOidc = field(default_factory=ShellOidc)
    recordings_dir: str = ""
    """Terminal recordings (asciicast v2). Default: state_dir/recordings."""
    audit_log: str = ""
    """The webshell's own hash-chained audit log (logins, terminals, commands). Default: state_dir/audit.jsonl."""

    @property
    def url(self) -> str:
        return self.public_url or f"https://{self.listen.host}:{self.listen.port}"


_NESTED.update({"ShellListen": ShellListen, "ShellTls": ShellTls, "ShellGateway": ShellGateway,
                "ShellOidc": ShellOidc})


def validate(s: WebshellSettings) -> list[str]:
    problems: list[str] = []
    if not 0 <= s.listen.port <= 65535:
        problems.append("listen.port: must be 0..65535")
    if s.public_url:
        _https_url(s.public_url, "public_url", problems)
    for key, value in (("tls.cert_file", s.tls.cert_file), ("tls.key_file", s.tls.key_file),
                       ("gateway.ca_file", s.gateway.ca_file)):
        if not value:
            problems.append(f"{key}: required")
        elif not s.path(value).is_file():
            problems.append(f"{key}: {s.path(value)} is not a readable file")
    if not s.gateway.url:
        problems.append("gateway.url: required (the gateway's API, https)")
    else:
        _https_url(s.gateway.url, "gateway.url", problems)
    if not s.clusters:
        problems.append("clusters: name at least one cluster the gateway fronts")
    if s.default_cluster and s.default_cluster not in s.clusters:
        problems.append(f"default_cluster: {s.default_cluster!r} is none of clusters")
    if s.oidc.issuer:
        _https_url(s.oidc.issuer, "oidc.issuer", problems)
    return problems + terminal_problems(s)


def from_mapping(data: Any, *, source: str = "<webshell settings>", base_dir: str = "") -> WebshellSettings:
    problems: list[str] = []
    settings: WebshellSettings = _build(WebshellSettings, data, "settings", problems)
    settings.base_dir = base_dir
    problems += validate(settings)
    if problems:
        raise SettingsError(source, [p.removeprefix("settings.") for p in problems])
    return settings


def load(path: str | Path) -> WebshellSettings:
    return read(path, from_mapping)


def server_name(s: WebshellSettings) -> str:
    return s.gateway.server_name or urlsplit(s.gateway.url).hostname or ""
