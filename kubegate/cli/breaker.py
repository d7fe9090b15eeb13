"""`kubegate breaker list|reset`: the delete budgets' circuit breakers, from an operator's kubeconfig."""

from __future__ import annotations

import argparse
import time
from typing import Any

from kubegate.cli.gateway_api import add_client_options, call_gateway, emit

PREFIX = "/kubegate/v1/breakers"


def _ago(ts: float) -> str:
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _closes(b: dict[str, Any]) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b["closesAt"])) if b.get("closesAt") else "on reset"


COLUMNS = [("BREAKER", lambda b: b["key"]), ("OPEN FOR", lambda b: _ago(b["openedAt"])), ("CLOSES", _closes),
           ("REASON", lambda b: b["reason"])]


def list_(args: argparse.Namespace) -> int:
    data = call_gateway(args, "GET", PREFIX)
    emit(args, data, data["items"], COLUMNS, empty="no circuit breaker is open")
    return 0


def reset(args: argparse.Namespace) -> int:
    done = []
    for key in args.keys:
        item = call_gateway(args, "POST", f"{PREFIX}/reset", {"breaker": key})
        done.append(item)
        if args.output == "table":
            print(f"breaker {item['key']} reset by {item['resetBy']} (was open since "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(item['openedAt']))}: {item['reason']})")
    if args.output != "table":
        emit(args, {"items": done}, done, COLUMNS)
    return 0


def add_parser(sub: Any) -> None:
    breaker = sub.add_parser("breaker", help="list and reset the circuit breakers of delete budgets")
    acts = breaker.add_subparsers(dest="breaker_command", metavar="ACTION", required=True)
    for name, handler, text in (("list", list_, "the open breakers you may see"),
                                ("reset", reset, "close breakers (deletes resume within the budget's windows)")):
        p = add_client_options(acts.add_parser(name, help=text))
        if name == "reset":
            p.add_argument("keys", nargs="+", metavar="BREAKER", help="as `kubegate breaker list` shows it")
        p.set_defaults(handler=handler)
