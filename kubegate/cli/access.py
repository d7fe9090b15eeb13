"""`kubegate access ...`: time-bound access requests, from a user's own kubeconfig."""

from __future__ import annotations

import argparse
from typing import Any

from kubegate.cli.gateway_api import add_client_options, call_gateway, emit

PREFIX = "/kubegate/v1/accessrequests"


def _show(item: dict[str, Any]) -> str:
    return (f"{item['id']}  {item['status']:<8} {item['user']} -> role {item['role']} on {item['cluster']}:"
            f"{item['namespace']} for {item['durationSeconds']}s  ({item['reason']})"
            + (f" by {item['decidedBy']}" if item.get("decidedBy") else ""))


COLUMNS = [("ID", lambda i: i["id"]), ("STATUS", lambda i: i["status"]), ("USER", lambda i: i["user"]),
           ("ROLE", lambda i: i["role"]), ("WHERE", lambda i: f"{i['cluster']}:{i['namespace']}"),
           ("FOR", lambda i: f"{i['durationSeconds']}s"), ("DECIDED BY", lambda i: i.get("decidedBy") or "-"),
           ("REASON", lambda i: i["reason"])]


def _one(args: argparse.Namespace, item: dict[str, Any]) -> None:
    if args.output == "table":
        print(_show(item))
    else:
        emit(args, item, [item], COLUMNS)


def request(args: argparse.Namespace) -> int:
    item = call_gateway(args, "POST", PREFIX, {
        "role": args.role, "cluster": args.cluster, "namespace": args.namespace,
        "durationSeconds": args.duration, "reason": args.reason})
    _one(args, item)
    if args.output == "table":
        print(f"ask an approver: kubegate access approve {item['id']}")
    return 0


def list_(args: argparse.Namespace) -> int:
    data = call_gateway(args, "GET", PREFIX)
    emit(args, data, data["items"], COLUMNS, empty="no access requests")
    return 0


def decide(args: argparse.Namespace) -> int:
    _one(args, call_gateway(args, "POST", f"{PREFIX}/{args.id}/{args.access_command}"))
    return 0


def add_parser(sub: Any, parse_duration: Any) -> None:
    access = sub.add_parser("access", help="time-bound access: request a role, approve or deny requests")
    acts = access.add_subparsers(dest="access_command", metavar="ACTION", required=True)

    common = add_client_options
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
