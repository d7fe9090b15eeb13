"""`kubegate access ...`: time-bound access requests, from a user's own kubeconfig."""

from __future__ import annotations

import argparse
from typing import Any

from kubegate.gateway_api import call_gateway

PREFIX = "/kubegate/v1/accessrequests"


def _show(item: dict[str, Any]) -> str:
    return (f"{item['id']}  {item['status']:<8} {item['user']} -> role {item['role']} on {item['cluster']}:"
            f"{item['namespace']} for {item['durationSeconds']}s  ({item['reason']})"
            + (f" by {item['decidedBy']}" if item.get("decidedBy") else ""))


def request(args: argparse.Namespace) -> int:
    item = call_gateway(args.kubeconfig, "POST", PREFIX, {
        "role": args.role, "cluster": args.cluster, "namespace": args.namespace,
        "durationSeconds": args.duration, "reason": args.reason})
    print(_show(item))
    print(f"ask an approver: kubegate access approve {item['id']}")
    return 0


def list_(args: argparse.Namespace) -> int:
    for item in call_gateway(args.kubeconfig, "GET", PREFIX)["items"]:
        print(_show(item))
    return 0


def decide(args: argparse.Namespace) -> int:
    print(_show(call_gateway(args.kubeconfig, "POST", f"{PREFIX}/{args.id}/{args.access_command}")))
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
