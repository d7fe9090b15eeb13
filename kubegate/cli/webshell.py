"""`kubegate webshell -c FILE`: the webshell as a process of its own, holding nothing of the gateway's.

It reaches the gateway over HTTPS only (its URL and CA are all it knows of it), serves its own
certificate, writes its own hash-chained audit log (logins, terminals, every command line, with
the recordings' SHA-256; the API requests those commands make are in the gateway's log, under the
same session id), and runs each terminal command in a sandbox (docs/webshell.md).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import signal
import sys
from typing import Any

from kubegate.audit.sink import JsonlSink
from kubegate.gateway.config import webshell_settings
from kubegate.gateway.config.settings import SettingsError
from kubegate.webshell.app import Webshell
from kubegate.webshell.config import OidcLogin, WebshellConfig


def config(s: webshell_settings.WebshellSettings, audit: JsonlSink) -> WebshellConfig:
    return WebshellConfig(
        host=s.listen.host, port=s.listen.port, public_url=s.url,
        cert_file=s.path(s.tls.cert_file), key_file=s.path(s.tls.key_file),
        gateway_url=s.gateway.url, gateway_ca_file=s.path(s.gateway.ca_file),
        gateway_server_name=webshell_settings.server_name(s),
        clusters=tuple(s.clusters), default_cluster=s.default_cluster,
        work_dir=s.path(s.work_dir) if s.work_dir else s.state,
        recordings_dir=s.path(s.recordings_dir) if s.recordings_dir else s.state / "recordings",
        audit_log=s.path(s.audit_log) if s.audit_log else s.state / "audit.jsonl",
        kubectl=shutil.which(s.kubectl or "kubectl") or s.kubectl, audit=audit.write,
        oidc=OidcLogin(s.oidc.issuer, s.oidc.client_id, str(s.path(s.oidc.ca_file)) if s.oidc.ca_file else "")
        if s.oidc.issuer else None,
        idle_seconds=s.idle_seconds, max_seconds=s.max_seconds, auditor_groups=tuple(s.auditor_groups),
        sandbox=s.sandbox)


def run(args: argparse.Namespace) -> int:
    try:
        s = webshell_settings.load(args.config)
    except SettingsError as e:
        print(e.report(), file=sys.stderr)
        return 2
    except OSError as e:
        print(f"kubegate: cannot read {args.config}: {e.strerror}", file=sys.stderr)
        return 2
    from kubegate.cli.logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    s.state.mkdir(parents=True, exist_ok=True)
    audit = JsonlSink(s.path(s.audit_log) if s.audit_log else s.state / "audit.jsonl")

    async def main() -> int:
        shell = Webshell(config(s, audit))
        await shell.start()
        if not s.public_url and s.listen.port == 0:  # the port picked is the origin browsers use
            shell.origin = f"https://{s.listen.host}:{shell.port}"
            shell.cfg = dataclasses.replace(shell.cfg, public_url=shell.origin)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"kubegate webshell on {shell.origin}, the gateway at {s.gateway.url}", flush=True)
        try:
            await stop.wait()
        finally:
            await shell.stop()
            audit.close()
        return 0

    return asyncio.run(main())


def add_parser(sub: Any) -> None:
    p = sub.add_parser("webshell", help="run the webshell as a process of its own (kubegate docs webshell)")
    p.add_argument("--config", "-c", required=True, help="the webshell's settings file (not the gateway's)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.set_defaults(handler=run)
