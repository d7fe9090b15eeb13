"""`kubegate token revoke|revocations`: revoke one token or every earlier token of a user, from an
administrator's kubeconfig (docs/security.md#offboarding)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jwt

from kubegate.cli.gateway_api import add_client_options, call_gateway, emit

PREFIX = "/kubegate/v1/tokens/revocations"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


COLUMNS = [("WHAT", lambda r: r["what"]), ("SUBJECT", lambda r: r["subject"]), ("BY", lambda r: r["by"]),
           ("AT", lambda r: _when(r["at"])), ("UNTIL", lambda r: _when(r["until"])), ("REASON", lambda r: r["reason"])]


def revoke(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"reason": args.reason}
    if args.token_file:
        # The leaked token itself: its id and expiry read off it (nothing is verified or sent but those).
        try:
            claims = jwt.decode(Path(args.token_file).read_text().strip(), options={"verify_signature": False})
        except (OSError, jwt.DecodeError) as e:
            print(f"error: {args.token_file} does not hold a JWT ({e})", file=sys.stderr)
            return 1
        if not isinstance(claims.get("jti"), str):
            print("error: that token has no jti claim: revoke its user with --user instead", file=sys.stderr)
            return 1
        body.update(id=claims["jti"], expires=float(claims.get("exp") or 0))
    elif args.id:
        body["id"] = args.id
    else:
        body["user"] = args.user
    record = call_gateway(args, "POST", PREFIX, body)
    if args.output != "table":
        emit(args, record, [record], COLUMNS)
        return 0
    what = f"token {record['subject']}" if record["what"] == "token" else \
        f"every token of {record['subject']} issued before now"
    print(f"{what} revoked: refused on every replica within about a second (until {_when(record['until'])})")
    return 0


def revocations(args: argparse.Namespace) -> int:
    data = call_gateway(args, "GET", PREFIX)
    emit(args, data, data["items"], COLUMNS, empty="no token is revoked")
    return 0


def add_parsers(token_sub: Any) -> None:
    p = add_client_options(token_sub.add_parser(
        "revoke", help="revoke one token (--id, --token-file) or every earlier token of a user (--user)"))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", help="the token's id (its jti; audit events carry it as kubegate.io/token-id)")
    which.add_argument("--token-file", help="a file holding the token itself (a leaked one)")
    which.add_argument("--user", help="every token of this user issued before now (offboarding)")
    p.add_argument("--reason", required=True, help="recorded in the audit log and shown to the token's holder")
    p.set_defaults(handler=revoke)
    add_client_options(token_sub.add_parser("revocations", help="the revocations in force")).set_defaults(
        handler=revocations)
