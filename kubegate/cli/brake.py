"""`kubegate brake on|off|status`: the emergency brake, from an operator's kubeconfig."""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

from kubegate.cli.gateway_api import add_client_options, call_gateway, emit

PREFIX = "/kubegate/v1/brakes"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "released"


COLUMNS = [("BRAKE", lambda b: b["id"]), ("SCOPE", lambda b: b["scope"]), ("BY", lambda b: b["by"]),
           ("SINCE", lambda b: _when(b["pulled_at"])), ("UNTIL", lambda b: _when(b["expires_at"])),
           ("REASON", lambda b: b["reason"])]


def on(args: argparse.Namespace) -> int:
    brake = call_gateway(args, "POST", PREFIX, {"cluster": args.cluster, "namespace": args.namespace,
                                                "reason": args.reason, "ttlSeconds": args.ttl})
    if args.output != "table":
        emit(args, brake, [brake], COLUMNS)
        return 0
    until = f" until {_when(brake['expires_at'])}" if brake["expires_at"] else " until released (`kubegate brake off`)"
    print(f"brake {brake['id']} is ON for {brake['scope']}{until}: every change there now needs break-glass approval; "
          "reads go on")
    return 0


def off(args: argparse.Namespace) -> int:
    ids = list(args.ids)
    if not ids:  # every brake of exactly this scope
        listed = call_gateway(args, "GET", PREFIX)["items"]
        ids = [b["id"] for b in listed if b["cluster"] == args.cluster and b["namespace"] == args.namespace]
        if not ids:
            print(f"no brake is on for exactly cluster {args.cluster}, namespace {args.namespace} "
                  "(`kubegate brake status` lists them)")
            return 1
    for brake_id in ids:
        brake = call_gateway(args, "DELETE", f"{PREFIX}/{brake_id}")
        if args.output == "table":
            print(f"brake {brake['id']} ({brake['scope']}) released")
    return 0


def status(args: argparse.Namespace) -> int:
    data = call_gateway(args, "GET", PREFIX)
    emit(args, data, data["items"], COLUMNS, empty="no emergency brake is on")
    if data.get("note") and args.output == "table":
        print(f"note: {data['note']}")
    return 0


def add_parser(sub: Any, parse_duration: Callable[[str], int]) -> None:
    brake = sub.add_parser("brake", help="the emergency brake: stop every change in a scope, on every replica")
    acts = brake.add_subparsers(dest="brake_command", metavar="ACTION", required=True)
    p = add_client_options(acts.add_parser("on", help="pull it: every change in scope needs break-glass approval"))
    p.add_argument("--cluster", default="*", help="a cluster name or glob (default: every cluster)")
    p.add_argument("--namespace", default="*", help="one namespace (default: every namespace and cluster-scoped objects)")
    p.add_argument("--reason", required=True, help="what everyone whose change is held reads")
    p.add_argument("--ttl", type=parse_duration, default=0, help="release it by itself after e.g. 1h (default: never)")
    p.set_defaults(handler=on)
    p = add_client_options(acts.add_parser("off", help="release brakes (by id, or every one of exactly a scope)"))
    p.add_argument("ids", nargs="*", metavar="BRAKE", help="as `kubegate brake status` shows them")
    p.add_argument("--cluster", default="*")
    p.add_argument("--namespace", default="*")
    p.set_defaults(handler=off)
    add_client_options(acts.add_parser("status", help="the brakes on now")).set_defaults(handler=status)
