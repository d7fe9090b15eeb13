"""`kubegate breaker list|reset`: the delete budgets' circuit breakers, from an operator's kubeconfig."""

from __future__ import annotations

import argparse
import time
from typing import Any

from kubegate.gateway_api import call_gateway

PREFIX = "/kubegate/v1/breakers"


def _ago(ts: float) -> str:
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def list_(args: argparse.Namespace) -> int:
    items = call_gateway(args.kubeconfig, "GET", PREFIX)["items"]
    if not items:
        print("no circuit breaker is open")
        return 0
    rows = [("BREAKER", "OPEN FOR", "CLOSES", "REASON")]
    for b in items:
        closes = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b["closesAt"])) if b.get("closesAt") else "on reset"
        rows.append((b["key"], _ago(b["openedAt"]), closes, b["reason"]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
    return 0


def reset(args: argparse.Namespace) -> int:
    for key in args.keys:
        item = call_gateway(args.kubeconfig, "POST", f"{PREFIX}/reset", {"breaker": key})
        print(f"breaker {item['key']} reset by {item['resetBy']} (was open since "
              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(item['openedAt']))}: {item['reason']})")
    return 0


def add_parser(sub: Any) -> None:
    breaker = sub.add_parser("breaker", help="list and reset the circuit breakers of delete budgets")
    acts = breaker.add_subparsers(dest="breaker_command", metavar="ACTION", required=True)
    for name, handler, text in (("list", list_, "the open breakers you may see"),
                                ("reset", reset, "close breakers (deletes resume within the budget's windows)")):
        p = acts.add_parser(name, help=text)
        p.add_argument("--kubeconfig", default=None, help="kubeconfig pointing at the gateway (default: $KUBECONFIG)")
        if name == "reset":
            p.add_argument("keys", nargs="+", metavar="BREAKER", help="as `kubegate breaker list` shows it")
        p.set_defaults(handler=handler)
