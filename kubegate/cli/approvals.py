"""`kubegate approvals list|show|approve|deny|withdraw` and `kubegate freeze status`, from a kubeconfig."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from kubegate.blast_view import radius_lines
from kubegate.cli.gateway_api import add_client_options, call_gateway, emit

PREFIX = "/kubegate/v1/approvals"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _line(t: dict[str, Any]) -> str:
    by = f" by {t['decidedBy']}" if t.get("decidedBy") else ""
    return f"{t['id']}  {t['status']:<8} {t['type']:<11} {t['user']}: {_target(t)} in {t['cluster']}{by}"


def _target(t: dict[str, Any]) -> str:
    return f"{t['verb']} {t['resource']} {t['namespace'] + '/' if t['namespace'] else ''}{t['name']}".rstrip("/ ")


COLUMNS = [("ID", lambda t: t["id"]), ("STATUS", lambda t: t["status"]), ("TYPE", lambda t: t["type"]),
           ("USER", lambda t: t["user"]), ("REQUEST", _target), ("CLUSTER", lambda t: t["cluster"]),
           ("DECIDED BY", lambda t: t.get("decidedBy") or "-")]


def list_(args: argparse.Namespace) -> int:
    data = call_gateway(args, "GET", PREFIX)
    emit(args, data, data["items"], COLUMNS, empty="no approval tickets")
    return 0


def show(args: argparse.Namespace) -> int:
    t = call_gateway(args, "GET", f"{PREFIX}/{args.id}")
    if args.output != "table":
        emit(args, t, [t], COLUMNS)
        return 0
    print(_line(t))
    print(f"  opened {_when(t['created'])}, valid until {_when(t['expiresAt'])}; body sha256 {t['bodyDigest'][:16]}…")
    for reason in t["reasons"]:
        print(f"  - {reason}")
    request = t.get("request") or {}
    if request.get("method"):
        # What exactly would run: approve the content, not a description of it.
        query = f"?{request['query']}" if request.get("query") else ""
        print(f"\n  {request['method']} {request['path']}{query}")
        if request.get("contentType"):
            print(f"  Content-Type: {request['contentType']}")
        for change in request.get("changes") or []:
            if "old" in change:
                print(f"  change {change['path']}: {json.dumps(change['old'])} -> {json.dumps(change['new'])}")
            else:  # a decided ticket keeps the paths only
                print(f"  change {change['path']}")
        if request.get("body"):
            print("  body:")
            print("\n".join(f"    {line}" for line in request["body"].splitlines()))
    if t.get("blastRadius"):
        print("\n  blast radius:")
        print("\n".join(f"    {line}" for line in radius_lines(t["blastRadius"])))
    return 0


def decide(args: argparse.Namespace) -> int:
    t = call_gateway(args, "POST", f"{PREFIX}/{args.id}/{args.approvals_command}")
    if args.output != "table":
        emit(args, t, [t], COLUMNS)
        return 0
    print(_line(t))
    if t["status"] == "approved":
        print(f"{t['user']} may now retry exactly that request, once, until {_when(t['expiresAt'])}")
    return 0


def _state(w: dict[str, Any]) -> str:
    return "FROZEN now" if w["active"] else ("next" if w["start"] else "over")


FREEZE_COLUMNS = [("NAME", lambda w: w["name"]), ("STATE", _state),
                  ("WINDOW", lambda w: f"{w['start']} -> {w['end']}" if w["start"] else "-"),
                  ("CLUSTERS", lambda w: ",".join(w["clusters"])), ("NAMESPACES", lambda w: ",".join(w["namespaces"])),
                  ("EXEMPT", lambda w: ",".join(w["exemptGroups"]) or "-")]


def freeze_status(args: argparse.Namespace) -> int:
    data = call_gateway(args, "GET", "/kubegate/v1/freeze")
    emit(args, data, data["windows"], FREEZE_COLUMNS, empty="no freeze windows are defined")
    return 0


def add_parser(sub: Any) -> None:
    approvals = sub.add_parser("approvals", help="approval tickets of risky changes and break-glass")
    acts = approvals.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)
    add_client_options(acts.add_parser("list", help="tickets you opened or may decide")).set_defaults(handler=list_)
    p = add_client_options(acts.add_parser("show", help="one ticket, with why it is needed"))
    p.add_argument("id")
    p.set_defaults(handler=show)
    for verb, what in (("approve", "approve a pending ticket (never your own)"),
                       ("deny", "deny a pending ticket (never your own)"),
                       ("withdraw", "give up a pending ticket of your own: nobody is asked any more")):
        p = add_client_options(acts.add_parser(verb, help=what))
        p.add_argument("id")
        p.set_defaults(handler=decide)

    freeze = sub.add_parser("freeze", help="change-freeze windows")
    freeze_acts = freeze.add_subparsers(dest="freeze_command", metavar="ACTION", required=True)
    add_client_options(freeze_acts.add_parser("status", help="what is frozen now and next")).set_defaults(
        handler=freeze_status)
