"""Calling kubegate's own API (/kubegate/v1/...) as kubectl would: the CLIs' client and output.

The kubeconfig is read by the `kubernetes` client's own loader, so kubegate's CLIs accept what
kubectl accepts: `--kubeconfig`, a `KUBECONFIG` list of files (merged), `--context`, exec plugins
(kubelogin and the like), `tokenFile`, client certificates, `tls-server-name`, paths relative to
the kubeconfig. Errors read like kubectl's: `Error from server (Forbidden): ...`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Callable, Sequence

import yaml

Column = tuple[str, Callable[[dict[str, Any]], str]]


def add_client_options(p: argparse.ArgumentParser, *, output: bool = True) -> argparse.ArgumentParser:
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig pointing at the gateway (default: $KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--context", default=None, help="the kubeconfig context to use (default: its current context)")
    if output:
        p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
        p.add_argument("--no-headers", action="store_true", help="table output without its header row")
    return p


def _fail(message: str) -> SystemExit:
    print(message, file=sys.stderr)
    return SystemExit(1)


def _client(args: argparse.Namespace) -> Any:
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import new_client_from_config, new_client_from_config_dict

    # The client logs a failed exec plugin (and goes on without a credential); kubectl stops there.
    # Its records are caught here (so nothing prints "ERROR:root:") and become the error.
    caught = _Records()
    root = logging.getLogger()
    root.addHandler(caught)
    try:
        merged = None if args.kubeconfig else merged_kubeconfig(os.environ.get("KUBECONFIG", ""))
        if merged is not None:
            api = new_client_from_config_dict(merged, context=args.context, persist_config=False)
        else:
            api = new_client_from_config(config_file=args.kubeconfig, context=args.context, persist_config=False)
        if failed := [r.getMessage() for r in caught.records if r.getMessage().startswith("exec:")]:
            raise _fail(f"error: getting credentials: {failed[0]}")
        return api
    except ConfigException as e:
        raise _fail(f"error: {e}") from None
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        raise _fail(f"error: cannot load the kubeconfig: {e}") from None
    finally:
        root.removeHandler(caught)


# Fields of kubeconfig entries that name files: relative to the file they are written in.
_PATH_FIELDS = {"clusters": ("certificate-authority",), "users": ("client-certificate", "client-key", "tokenFile")}


def merged_kubeconfig(kubeconfig_env: str) -> dict[str, Any] | None:
    """A KUBECONFIG list merged as kubectl merges it (None when it names one file or none, which the
    client's own loader reads as kubectl does): the first file to set `current-context` wins, and
    the first definition of each named cluster, user and context wins; files that do not exist are
    skipped; paths in an entry stay relative to the file that holds it. (The Python client's merger
    lets a later file's current-context win, so a CLI could act as another user on another gateway.)"""
    paths = [p for p in kubeconfig_env.split(os.pathsep) if p]
    if len(paths) < 2:
        return None
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    seen: dict[str, set[str]] = {kind: set() for kind in ("clusters", "users", "contexts")}
    for path in paths:
        try:
            doc = yaml.safe_load(open(path, encoding="utf-8")) or {}
        except FileNotFoundError:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"{path} is not a kubeconfig")
        if "current-context" not in merged and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
        base = os.path.dirname(os.path.abspath(path))
        for kind in seen:
            for entry in doc.get(kind) or []:
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str) or name in seen[kind]:
                    continue
                seen[kind].add(name)
                entry = json.loads(json.dumps(entry))
                body = entry.get(kind[:-1]) or {}
                for field in _PATH_FIELDS.get(kind, ()):
                    if isinstance(body.get(field), str) and body[field] and not os.path.isabs(body[field]):
                        body[field] = os.path.join(base, body[field])
                command = (body.get("exec") or {}).get("command") if kind == "users" else None
                if isinstance(command, str) and os.sep in command and not os.path.isabs(command):
                    body["exec"]["command"] = os.path.join(base, command)
                merged[kind].append(entry)
    return merged


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def call_gateway(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call kubegate's own API; on an error, print it as kubectl would and exit 1."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    api = _client(args)
    host = api.configuration.host
    # A kubeconfig for one cluster behind the gateway ends in /clusters/<name>: the API is at the root.
    # (Given per call: the credential refresh below reloads the kubeconfig, server URL included.)
    root = host.split("/clusters/")[0] if "/clusters/" in host else host
    try:
        # The client's own request path: its auth settings refresh exec-plugin and tokenFile credentials.
        method, url, headers, payload, _ = api.param_serialize(
            method, path, header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"], _host=root)
        response = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=30)
        response.read()
        data = response.data or b"{}"
        if response.status >= 400:
            try:
                status = json.loads(data)
                message, reason = status.get("message") or response.reason, status.get("reason") or response.reason
            except ValueError:
                message, reason = data.decode(errors="replace")[:500], response.reason
            raise _fail(f"Error from server ({reason}): {message}")
        return json.loads(data)
    except ApiException as e:
        raise _fail(f"Error from server ({e.reason}): {e.body or e.reason}") from None
    except ConfigException as e:  # an exec plugin that failed, a token file that vanished
        raise _fail(f"error: {e}") from None
    except (HTTPError, OSError) as e:
        raise _fail(f"error: cannot reach the gateway at {root}: {e}") from None
    finally:
        api.close()


def emit(args: argparse.Namespace, data: Any, items: Sequence[dict[str, Any]], columns: Sequence[Column],
         empty: str = "") -> None:
    """Print the answer: a table with a header row (kubectl's layout), or the whole object as JSON/YAML."""
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return
    if args.output == "yaml":
        print(yaml.safe_dump(data, sort_keys=False), end="")
        return
    if not items:
        if empty:
            print(empty, file=sys.stderr)
        return
    rows = [[name for name, _ in columns]] if not args.no_headers else []
    rows += [[get(item) for _, get in columns] for item in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
