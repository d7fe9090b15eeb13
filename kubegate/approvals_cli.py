"""`kubegate approvals list|show|approve|deny` and `kubegate freeze status`, from a kubeconfig."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from kubegate.gateway_api import call_gateway

PREFIX = "/kubegate/v1/approvals"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _line(t: dict[str, Any]) -> str:
    target = f"{t['verb']} {t['resource']} {t['namespace'] + '/' if t['namespace'] else ''}{t['name']}".rstrip("/ ")
    by = f" by {t['decidedBy']}" if t.get("decidedBy") else ""
    return f"{t['id']}  {t['status']:<8} {t['type']:<11} {t['user']}: {target} in {t['cluster']}{by}"


def list_(args: argparse.Namespace) -> int:
    items = call_gateway(args.kubeconfig, "GET", PREFIX)["items"]
    for t in items:
        print(_line(t))
    if not items:
        print("no approval tickets")
    return 0


def show(args: argparse.Namespace) -> int:
    t = call_gateway(args.kubeconfig, "GET", f"{PREFIX}/{args.id}")
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
            print(f"  change {change['path']}: {json.dumps(change['old'])} -> {json.dumps(change['new'])}")
        if request.get("body"):
            print("  body:")
            print("\n".join(f"    {line}" for line in request["body"].splitlines()))
    return 0


def decide(args: argparse.Namespace) -> int:
    t = call_gateway(args.kubeconfig, "POST", f"{PREFIX}/{args.id}/{args.approvals_command}")
    print(_line(t))
    if t["status"] == "approved":
        print(f"{t['user']} may now retry exactly that request, once, until {_when(t['expiresAt'])}")
    return 0


def freeze_status(args: argparse.Namespace) -> int:
    data = call_gateway(args.kubeconfig, "GET", "/kubegate/v1/freeze")
    if not data["windows"]:
        print("no freeze windows are defined")
    for w in data["windows"]:
        state = "FROZEN now" if w["active"] else ("next" if w["start"] else "over")
        span = f"{w['start']} -> {w['end']}" if w["start"] else ""
        scope = f"clusters {','.join(w['clusters'])}, namespaces {','.join(w['namespaces'])}"
        print(f"{w['name']:<16} {state:<11} {span}  ({scope}; exempt: {', '.join(w['exemptGroups']) or 'nobody'})")
    return 0


def add_parser(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--kubeconfig", default=None, help="kubeconfig pointing at the gateway (default: $KUBECONFIG)")
        return p

    approvals = sub.add_parser("approvals", help="approval tickets of risky changes and break-glass")
    acts = approvals.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)
    common(acts.add_parser("list", help="tickets you opened or may decide")).set_defaults(handler=list_)
    p = common(acts.add_parser("show", help="one ticket, with why it is needed"))
    p.add_argument("id")
    p.set_defaults(handler=show)
    for verb in ("approve", "deny"):
        p = common(acts.add_parser(verb, help=f"{verb} a pending ticket (never your own)"))
        p.add_argument("id")
        p.set_defaults(handler=decide)

    freeze = sub.add_parser("freeze", help="change-freeze windows")
    freeze_acts = freeze.add_subparsers(dest="freeze_command", metavar="ACTION", required=True)
    common(freeze_acts.add_parser("status", help="what is frozen now and next")).set_defaults(handler=freeze_status)
