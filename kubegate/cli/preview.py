"""`kubegate preview -- kubectl ...` and `kubegate preview -f FILE`: what a change would do and what the
gates would say, without doing it.

kubectl runs as typed, with `--server` pointed at the gateway's preview prefix
(`/kubegate/preview/<id>/…`, the rest of the server URL kept): its reads see the real cluster, its
changes are only dry-run by the cluster and never held (no ticket is opened). Then the preview's
report is fetched and printed: for each change, would it pass, need approval or be refused, and
its blast radius.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

from kubegate.blast_view import radius_lines
from kubegate.cli.gateway_api import _client, add_client_options, call_gateway


def add_parser(sub: Any) -> None:
    p = sub.add_parser("preview", help="run a kubectl line or apply a manifest against the gateway without executing "
                                       "it: what it would take with it, and what the gates would say",
                       description="kubegate preview [-f FILE | -- kubectl ARGS...]")
    add_client_options(p, output=False)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("-f", "--filename", help="a manifest to preview as `kubectl apply -f FILE` would apply it")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- kubectl ARGS... (the kubectl line to preview)")
    p.set_defaults(handler=run)


def _preview_server(server: str, preview: str) -> str:
    """The server URL with the preview prefix between its origin and its path (a /clusters/<name> kept)."""
    parts = urlsplit(server)
    return f"{parts.scheme}://{parts.netloc}/kubegate/preview/{preview}{parts.path.rstrip('/')}"


def _kubectl_line(args: argparse.Namespace) -> list[str] | None:
    command = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else list(args.command)
    if args.filename:
        if command:
            return None
        return ["kubectl", "apply", "-f", args.filename]
    if not command:
        return None
    if command[0] != "kubectl" and not command[0].endswith("/kubectl"):
        command = ["kubectl", *command]
    return command


# kubectl waits for what a real change would do (an object gone, a node's pods evicted); a preview
# only dry-runs, so those waits would never end: they are cut short, and the report says what would go.
NO_WAIT = {"delete": "--wait=false", "replace": "--wait=false", "drain": "--timeout=10s"}
MAX_SECONDS = 300


def _verb(line: list[str]) -> str:
    """kubectl's command (the first word that is not a flag or a flag's value we know takes one)."""
    takes_value = {"-n", "--namespace", "--context", "--cluster", "--user", "-l", "--selector", "-o", "--output",
                   "-f", "--filename", "--kubeconfig", "--token", "--as", "--as-group"}
    skip = False
    for word in line[1:]:
        if skip:
            skip = False
        elif word in takes_value:
            skip = True
        elif not word.startswith("-"):
            return word
    return ""


def run(args: argparse.Namespace) -> int:
    line = _kubectl_line(args)
    if line is None:
        print("error: give either -f FILE or -- kubectl ARGS...", file=sys.stderr)
        return 2
    if any(a in ("-s", "--server") or a.startswith("--server=") for a in line[1:]):
        print("error: the kubectl line may not set --server: the preview sets it to the gateway's preview address",
              file=sys.stderr)
        return 2
    binary = shutil.which(line[0]) if "/" not in line[0] else line[0]
    if binary is None:
        print(f"error: {line[0]} is not on PATH", file=sys.stderr)
        return 2
    api = _client(args)
    server = api.configuration.host
    api.close()
    preview = secrets.token_hex(10)
    extra = [f"--server={_preview_server(server, preview)}"]
    extra += [f"--kubeconfig={args.kubeconfig}"] if args.kubeconfig else []
    extra += [f"--context={args.context}"] if args.context else []
    verb = _verb(line)
    if verb in NO_WAIT and not any(a.startswith(NO_WAIT[verb].split("=")[0]) for a in line):
        extra.append(NO_WAIT[verb])
    out = sys.stderr if args.output == "json" else sys.stdout
    try:
        done = subprocess.run([binary, *extra, *line[1:]], stdout=out, stderr=sys.stderr, timeout=MAX_SECONDS)
        code = done.returncode
    except subprocess.TimeoutExpired:
        print(f"kubegate preview: kubectl was stopped after {MAX_SECONDS}s (it waits for what a preview does not "
              "do)", file=sys.stderr)
        code = 1
    report = _report(args, preview)
    entries: list[dict[str, Any]] = report.get("entries") or []
    if args.output == "json":
        print(json.dumps({**report, "kubectlExitCode": code}, indent=2))
    else:
        print(f"\nPREVIEW {preview}: nothing was changed; kubectl's changes above were dry runs.")
        if not entries:
            print("No change was sent (only reads, or kubectl stopped before a change).")
        for e in entries:
            where = f"{e['namespace']}/{e['name']}" if e["namespace"] else e["name"] or "(collection)"
            print(f"\n{e['method']} {e['resource']} {where}: " + {
                "allowed": "would pass", "needs approval": "WOULD NEED APPROVAL",
                "refused": f"WOULD BE REFUSED ({e['code']})"}[e["outcome"]])
            if e.get("message"):
                print(f"  {e['message']}")
            if e.get("blastRadius"):
                print("\n".join(f"  {line}" for line in radius_lines(e["blastRadius"])))
    held = any(e["outcome"] != "allowed" for e in entries)
    return 1 if held else code


def _report(args: argparse.Namespace, preview: str) -> dict[str, Any]:
    found: dict[str, Any] = call_gateway(argparse.Namespace(kubeconfig=args.kubeconfig, context=args.context),
                                         "GET", f"/kubegate/v1/previews/{preview}")
    return found
