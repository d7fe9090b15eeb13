"""The clusters behind the gateway: where each is, how it is verified, which credential it gets."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..errors import Denial
from ..config.settings import Cluster, Settings, SettingsError

CLUSTER_PREFIX = "/clusters/"


@dataclass
class TokenFile:
    """A bearer token read from a file and re-read when the file changes (rotated tokens)."""

    path: Path
    _mtime: float = -1.0
    _token: str = ""

    def get(self) -> str:
        mtime = os.stat(self.path).st_mtime
        if mtime != self._mtime:
            self._token, self._mtime = self.path.read_text().strip(), mtime
        return self._token


@dataclass
class Upstream:
    name: str
    host: str
    port: int
    base_path: str  # path of the server URL ("" for most), prefixed to every forwarded path
    server_name: str  # what the apiserver's certificate must name (SNI and verification)
    ca_file: Path
    default: bool = False
    token: str = ""
    token_file: TokenFile | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    tls_context: Any = field(default=None, repr=False)  # built by upstream_tls, opaque here

    def authorization(self) -> str | None:
        token = self.token_file.get() if self.token_file else self.token
        return f"Bearer {token}" if token else None


class Upstreams:
    def __init__(self, upstreams: list[Upstream]) -> None:
        self.all = upstreams
        self.by_name = {u.name: u for u in upstreams}
        self.default = next((u for u in upstreams if u.default), None)
        self._by_address = {(u.host, u.port): u for u in upstreams}

    def route(self, raw_path: str) -> tuple[Upstream, str]:
        """(the cluster, the path without the cluster prefix) for a request path."""
        if raw_path.startswith(CLUSTER_PREFIX):
            name, slash, rest = raw_path[len(CLUSTER_PREFIX):].partition("/")
            upstream = self.by_name.get(name)
            if upstream is None:
                known = ", ".join(sorted(self.by_name))
                raise Denial(404, f"kubegate: no cluster named {name!r} behind this gateway (known: {known})",
                             "NotFound")
            return upstream, slash + rest if rest else "/"
        if self.default is None:
            raise Denial(404, "kubegate: this gateway fronts several clusters; use a server URL "
                              "ending in /clusters/<name>", "NotFound")
        return self.default, raw_path

    def by_address(self, host: str, port: int) -> Upstream | None:
        return self._by_address.get((host, port))


def _materialize(state: Path, name: str, data_b64: str) -> Path:
    """Inline PEM data (as kubeconfigs carry it) written to a private file the TLS layer can load."""
    directory = state / "upstream"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / name
    path.touch(mode=0o600)
    path.write_bytes(base64.b64decode(data_b64))
    return path


def _from_kubeconfig(settings: Settings, c: Cluster) -> Cluster:
    path = settings.path(c.kubeconfig)
    where = f"cluster {c.name!r}: kubeconfig {path}"
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SettingsError(where, [f"cannot read it: {e}"]) from e

    def named(kind: str, name: str) -> dict[str, Any]:
        for entry in cfg.get(f"{kind}s") or []:
            if entry.get("name") == name:
                return entry.get(kind) or {}
        raise SettingsError(where, [f"has no {kind} named {name!r}"])

    context = named("context", c.context or cfg.get("current-context", ""))
    cluster, user = named("cluster", context.get("cluster", "")), named("user", context.get("user", ""))
    base = path.parent
    rel = lambda p: str(p if Path(p).is_absolute() else base / p)  # noqa: E731 - kubeconfig-relative paths
    out = Cluster(name=c.name, default=c.default, server=cluster.get("server", ""),
                  tls_server_name=cluster.get("tls-server-name", ""))
    if cluster.get("certificate-authority-data"):
        out.ca_data = cluster["certificate-authority-data"]
    elif cluster.get("certificate-authority"):
        out.ca_file = rel(cluster["certificate-authority"])
    if user.get("token"):
        out.token = user["token"]
    elif user.get("tokenFile"):
        out.token_file = rel(user["tokenFile"])
    elif user.get("client-certificate-data") and user.get("client-key-data"):
        out.client_cert_file = str(_materialize(settings.state, f"{c.name}-client.crt", user["client-certificate-data"]))
        out.client_key_file = str(_materialize(settings.state, f"{c.name}-client.key", user["client-key-data"]))
    elif user.get("client-certificate") and user.get("client-key"):
        out.client_cert_file, out.client_key_file = rel(user["client-certificate"]), rel(user["client-key"])
    else:
        raise SettingsError(where, ["its user has no token, tokenFile or client certificate "
                                    "(exec and auth-provider plugins are not supported)"])
    if cluster.get("insecure-skip-tls-verify"):
        raise SettingsError(where, ["insecure-skip-tls-verify is refused: the apiserver is always verified"])
    return out


def build(settings: Settings) -> Upstreams:
    upstreams = []
    for c in settings.clusters:
        if c.kubeconfig:
            c = _from_kubeconfig(settings, c)
        url = urlsplit(c.server)
        if url.scheme != "https" or not url.hostname:
            raise SettingsError(f"cluster {c.name!r}", [f"server must be an https URL, got {c.server!r}"])
        ca = settings.path(c.ca_file) if c.ca_file else _materialize(settings.state, f"{c.name}-ca.crt", c.ca_data)
        upstreams.append(Upstream(
            name=c.name, host=url.hostname, port=url.port or 443, base_path=url.path.rstrip("/"),
            server_name=c.tls_server_name or url.hostname, ca_file=ca, default=c.default, token=c.token,
            token_file=TokenFile(settings.path(c.token_file)) if c.token_file else None,
            client_cert_file=settings.path(c.client_cert_file) if c.client_cert_file else None,
            client_key_file=settings.path(c.client_key_file) if c.client_key_file else None,
        ))
    return Upstreams(upstreams)
