"""`kubegate access ...`: time-bound access requests, from a user's own kubeconfig."""

from __future__ import annotations

import argparse
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

PREFIX = "/kubegate/v1/accessrequests"


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


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    base, tls, token = _gateway(args.kubeconfig)
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


def _show(item: dict[str, Any]) -> str:
    return (f"{item['id']}  {item['status']:<8} {item['user']} -> role {item['role']} on {item['cluster']}:"
            f"{item['namespace']} for {item['durationSeconds']}s  ({item['reason']})"
            + (f" by {item['decidedBy']}" if item.get("decidedBy") else ""))


def request(args: argparse.Namespace) -> int:
    item = _call(args, "POST", PREFIX, {"role": args.role, "cluster": args.cluster, "namespace": args.namespace,
                                        "durationSeconds": args.duration, "reason": args.reason})
    print(_show(item))
    print(f"ask an approver: kubegate access approve {item['id']}")
    return 0


def list_(args: argparse.Namespace) -> int:
    for item in _call(args, "GET", PREFIX)["items"]:
        print(_show(item))
    return 0


def decide(args: argparse.Namespace) -> int:
    print(_show(_call(args, "POST", f"{PREFIX}/{args.id}/{args.access_command}")))
    return 0


def add_parser(sub: Any, parse_duration: Any) -> None:
    access = sub.add_parser("access", help="time-bound access: request a role, approve or deny requests")
    acts = access.add_subparsers(dest="access_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--kubeconfig", default=None, help="kubeconfig pointing at the gateway (default: $KUBECONFIG)")
        return p

    req = common(acts.add_parser("request", help="ask for a role in a cluster/namespace for a while"))
    req.add_argument("--role", required=True)
    req.add_argument("--cluster", required=True)
    req.add_argument("--namespace", default="*")
    req.add_argument("--for", dest="duration", type=parse_duration, required=True, help="e.g. 30m, 2h")
    req.add_argument("--reason", required=True)
    req.set_defaults(handler=request)
    common(acts.add_parser("list", help="list access requests")).set_defaults(handler=list_)
    for verb in ("approve", "deny"):
        p = common(acts.add_parser(verb, help=f"{verb} a pending request (never your own)"))
        p.add_argument("id")
        p.set_defaults(handler=decide)
