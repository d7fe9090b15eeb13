"""Calling kubegate's own API (/kubegate/v1/...) with the user's kubeconfig: the CLI's client."""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def _gateway(kubeconfig: str | None) -> tuple[str, ssl.SSLContext, str]:
    """(gateway base URL, TLS context, bearer token) from the kubeconfig's current context."""
    path = Path(kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube/config")
    cfg = yaml.safe_load(path.read_text())
    ctx_name = cfg.get("current-context")
    context = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == context["user"])
    server = cluster["server"].rstrip("/")
    if "/clusters/" in server:
        server = server.split("/clusters/")[0]
    tls = ssl.create_default_context()
    if cluster.get("certificate-authority-data"):
        with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as f:
            f.write(base64.b64decode(cluster["certificate-authority-data"]))
        tls.load_verify_locations(f.name)
        os.unlink(f.name)
    elif cluster.get("certificate-authority"):
        tls.load_verify_locations(cluster["certificate-authority"])
    token = user.get("token") or ""
    if not token:
        raise SystemExit("kubegate: the kubeconfig's user has no token (use one from `kubegate kubeconfig`)")
    return server, tls, token


def call_gateway(kubeconfig: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call kubegate's own API; on an error, print it as kubectl would and exit 1."""
    base, tls, token = _gateway(kubeconfig)
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=tls, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message", str(e))
        except ValueError:
            message = str(e)
        print(f"Error from kubegate ({e.code}): {message}", file=sys.stderr)
        raise SystemExit(1) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"kubegate: cannot reach the gateway at {base}: {reason}", file=sys.stderr)
        raise SystemExit(1) from None
