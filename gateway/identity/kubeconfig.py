"""Kubeconfigs that point users at the gateway: how people are onboarded."""

from __future__ import annotations

import base64

import yaml

from ..config.settings import Settings


def server_url(settings: Settings, cluster: str | None) -> str:
    base = settings.url.rstrip("/")
    if cluster is None:
        if settings.default_cluster() is None:
            names = ", ".join(c.name for c in settings.clusters)
            raise ValueError(f"no default cluster; pick one with --cluster ({names})")
        return base
    if settings.cluster(cluster) is None:
        raise ValueError(f"no cluster named {cluster!r} behind this gateway")
    return f"{base}/clusters/{cluster}"


def render(settings: Settings, ca_pem: str, token: str, *, user: str, cluster: str | None,
           namespace: str = "default") -> str:
    name = cluster or (settings.default_cluster().name if settings.default_cluster() else "kubegate")  # type: ignore[union-attr]
    context = f"{user}@{name}"
    doc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {
            "server": server_url(settings, cluster),
            "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": name, "user": user, "namespace": namespace}}],
        "current-context": context,
    }
    return yaml.safe_dump(doc, sort_keys=False)
