"""The `kubegate` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kubegate import __version__
from kubegate.cli import logs
from kubegate.cli.problems import github_annotation, located

if TYPE_CHECKING:
    from kubegate.gateway.identity.authn import TokenIssuer
    from kubegate.gateway.config.settings import Settings

Handler = Callable[[argparse.Namespace], int]
DEFAULT_CONFIG = os.environ.get("KUBEGATE_CONFIG", "kubegate.yaml")


def parse_duration(text: str) -> int:
    """Seconds in '90s', '30m', '12h', '7d' or a plain number of seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 90s, 30m, 12h, 7d)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _settings(args: argparse.Namespace) -> "Settings":
    from kubegate.gateway.config import settings

    try:
        return settings.load(args.config)
    except settings.SettingsError as e:
        print(e.report(), file=sys.stderr)
        raise SystemExit(2) from None


def _doctor(args: argparse.Namespace) -> int:
    from kubegate.gateway import preflight

    cfg = _settings(args)
    findings, clusters = preflight.local(cfg)
    findings += asyncio.run(preflight.remote(cfg, clusters))
    failed = 0
    rows = []
    for f in findings:
        # A port in use is expected when the gateway already runs: noted, not failed.
        note = not f.ok and f.check in ("listen.port", "metrics.port")
        mark = "ok" if f.ok else ("note" if note else "FAIL")
        failed += mark == "FAIL"
        rows.append({"check": f.check, "result": mark, "detail": f.detail})
    if getattr(args, "output", "text") == "json":
        import json

        print(json.dumps({"config": str(args.config), "problems": failed, "checks": rows}, indent=2))
        return 1 if failed else 0
    for row in rows:
        print(f"[{row['result']:>4}] {row['check']}: {row['detail']}")
    print(f"\n{failed} problem(s) in {args.config}" if failed else f"\nall {len(findings)} checks passed")
    return 1 if failed else 0


def _compiled_modules() -> list[str]:
    """kubegate's modules this interpreter loads as native extensions (a build compiled with mypyc,
    docs/performance.md), by name; empty for the interpreted build the wheel ships."""
    import importlib.util
    import pkgutil

    import kubegate.audit
    import kubegate.gateway

    found = []
    for package in (kubegate.gateway, kubegate.audit):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            spec = importlib.util.find_spec(module.name)
            if spec is not None and spec.origin and spec.origin.endswith((".so", ".pyd")):
                found.append(module.name)
    return found


def _version(args: argparse.Namespace) -> int:
    import platform

    import mitmproxy.version

    info: dict[str, Any] = {"kubegate": __version__, "python": platform.python_version(),
                            "mitmproxy": mitmproxy.version.VERSION, "compiled": _compiled_modules()}
    if args.output == "json":
        import json

        print(json.dumps(info, indent=2))
    else:
        build = f"{len(info['compiled'])} modules compiled" if info["compiled"] else "interpreted"
        print(f"kubegate {info['kubegate']} (Python {info['python']}, mitmproxy {info['mitmproxy']}, {build})")
    return 0


def _completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from kubegate.gateway import preflight
    from kubegate.gateway.engine import workers
    from kubegate.gateway.engine.server import Gateway, WorkerRole

    cfg = _settings(args)
    worker = WorkerRole(args.worker_slot, args.worker_port, Path(args.worker_dir)) if args.worker_slot else None
    count, problems = workers.worker_count(args.workers, cfg) if worker is None else (1, [])
    # What would fail once serving (a busy port, a key that does not fit, a CA that is no PEM...) is
    # reported now, all at once, in the settings file's terms. (A worker: its supervisor did.)
    if worker is None:
        problems += preflight.blocking_problems(cfg)
    if problems:
        print(f"kubegate: {len(problems)} problem(s) in {args.config}:\n" + "\n".join(f"  - {p}" for p in problems),
              file=sys.stderr)
        return 2
    logs.configure_logging(args.log_level, args.log_format, worker=worker.slot if worker else 0)

    def started(gateway: "Gateway | workers.Supervisor") -> None:
        webshell = gateway.webshell
        print(f"kubegate serving on https://{cfg.listen.host}:{gateway.port}"
              + (f", metrics on http://{cfg.metrics.host}:{gateway.metrics_port}/metrics"
                 if gateway.metrics_port else "")
              + (f", webshell on {webshell.cfg.public_url}" if webshell else ""), flush=True)

    async def main() -> int:
        if worker is None and count > 1:
            log_args = ["--log-level", args.log_level, "--log-format", args.log_format]
            return await workers.Supervisor(cfg, args.config, count, log_args).run(started)

        def serving(gateway: "Gateway") -> None:
            # What is loaded by now (the engine, the policies, the modules) lives as long as the
            # process: out of the cycle collector's sight, so a collection walks only what requests
            # allocate (bench/profile.py: 1,190 -> 1,137 µs per request in one run).
            gc.freeze()
            if worker is None:
                started(gateway)

        await Gateway(cfg, worker=worker).serve_until_signalled(serving)
        return 0

    from kubegate.audit.policy import PolicyError as AuditPolicyError
    from kubegate.gateway.gates.policy import GatePolicyError
    from kubegate.gateway.authz.policy import PolicyError

    try:
        return asyncio.run(main())
    except PolicyError as e:
        print(f"kubegate: the authorization policy in {cfg.path(cfg.authz.policy_dir)} is invalid; nothing is "
              "served:\n" + "\n".join(f"  - {p}" for p in e.problems), file=sys.stderr)
        return 2
    except GatePolicyError as e:
        print(f"kubegate: the gate policy in {cfg.path(cfg.gates.policy_dir)} is invalid; nothing is "
              "served:\n" + "\n".join(f"  - {p}" for p in e.problems), file=sys.stderr)
        return 2
    except AuditPolicyError as e:
        print(f"kubegate: {e}\nnothing is served", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"kubegate: cannot serve: {e}", file=sys.stderr)
        return 1


def _issuer(args: argparse.Namespace) -> "tuple[Settings, TokenIssuer]":
    from kubegate.gateway.identity import authn
    from kubegate.gateway.identity import keys

    cfg = _settings(args)
    try:
        return cfg, authn.TokenIssuer(cfg.issuer, keys.signing_key_pem(cfg, create=False))
    except keys.MissingKeys as e:
        raise SystemExit(f"kubegate: {e}") from None


def _token_issue(args: argparse.Namespace) -> int:
    _, issuer = _issuer(args)
    try:
        print(issuer.issue(args.user, args.group, ttl_seconds=args.ttl))
    except ValueError as e:
        print(f"kubegate: {e}", file=sys.stderr)
        return 2
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    from kubegate.gateway.identity import keys
    from kubegate.gateway.identity import kubeconfig

    cfg, issuer = _issuer(args)
    try:
        token = issuer.issue(args.user, args.group, ttl_seconds=args.ttl)
        text = kubeconfig.render(cfg, keys.serving_tls(cfg, create=False).ca_file.read_text(), token,
                                 user=args.user, cluster=args.cluster, namespace=args.namespace)
    except keys.MissingKeys as e:
        print(f"kubegate: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"kubegate: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


def _policy_dirs(directory: str) -> tuple[str | None, str | None]:
    """(authorization dir, gate dir) in DIR: DIR itself when it is one, else its authz/ and gates/."""
    from pathlib import Path

    from kubegate.gateway.gates import limits_policy

    root = Path(directory)
    if (root / "model.conf").exists():
        return directory, None
    gate_files = (limits_policy.FILE, "freeze.yaml", "rules.yaml", "webhooks.yaml", "health.yaml", "rollouts.yaml")
    if any((root / f).exists() for f in gate_files) or root.name == "gates":
        return None, directory
    authz, gates = root / "authz", root / "gates"
    return (str(authz) if authz.is_dir() else None), (str(gates) if gates.is_dir() else None)


def _policy_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kubegate.gateway.gates import policy as gate_policy
    from kubegate.gateway.authz import policy

    authz_dir, gates_dir = _policy_dirs(args.dir)
    if authz_dir is None and gates_dir is None:
        print(f"kubegate: {args.dir} holds no policy (model.conf, limits.yaml, or authz/ and gates/)", file=sys.stderr)
        return 1
    problems: list[str] = []
    warnings: list[str] = []
    summary = []
    if authz_dir is not None:
        ps = policy.load(authz_dir)
        problems += ps.problems
        if ps.ok:  # what serving would do with it: build the authorizer and evaluate a decision
            from kubegate.gateway.authz.authorizer import Authorizer
            try:
                Authorizer(ps)
            except policy.PolicyError as e:
                problems += e.problems
        warnings += ps.warnings
        summary.append(f"{authz_dir}: {len(ps.rules)} rules, {len(ps.bindings)} bindings")
    if gates_dir is not None:
        gates, gate_problems = gate_policy.load(Path(gates_dir))
        problems += gate_problems
        summary.append(f"{gates_dir}: {len(gates.limits.budgets)} delete budgets, {len(gates.limits.qps)} QPS limits, "
                       f"{len(gates.change.freeze)} freeze windows, {len(gates.change.rules)} rules, "
                       f"{len(gates.change.webhooks)} webhooks, {len(gates.health.gates)} alert gates, "
                       f"{len(gates.rollouts.rollouts)} rollouts")
    return _report_check(args, problems, warnings, summary)


def _report_check(args: argparse.Namespace, problems: list[str], warnings: list[str], summary: list[str]) -> int:
    output = getattr(args, "output", "text")
    if output == "json":
        print(json.dumps({"ok": not problems, "problems": [located(p) for p in problems],
                          "warnings": [located(w) for w in warnings], "checked": summary}, indent=2))
        return 1 if problems else 0
    if output == "github":
        for w in warnings:
            print(github_annotation("warning", w, "kubegate policy check"))
        for p in problems:
            print(github_annotation("error", p, "kubegate policy check"))
    else:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        for p in problems:
            print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    print("\n".join(f"{line}: OK" for line in summary))
    return 0


def _policy_test(args: argparse.Namespace) -> int:
    from kubegate.cli import policy_test as policy_test_cli

    return policy_test_cli.main(args, _policy_dirs(args.dir))


def _policy_replay(args: argparse.Namespace) -> int:
    from kubegate.cli import policy_replay as policy_replay_cli

    return policy_replay_cli.main(args, _policy_dirs)


def _init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kubegate import starter

    directory = Path(args.dir)
    try:
        starter.init(directory, cluster_kubeconfig=Path(args.cluster_kubeconfig) if args.cluster_kubeconfig else None,
                     force=args.force)
    except starter.InitError as e:
        print(f"kubegate: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"kubegate: cannot write to {directory}: {e.strerror}", file=sys.stderr)
        return 1
    config = directory / "kubegate.yaml"
    print(f"""wrote {config}, {directory / 'policies'}/ and {directory / 'impersonator-rbac.yaml'}

next:
  1. give the gateway its own credential for your cluster: apply {directory / 'impersonator-rbac.yaml'}
     there and write a kubeconfig for that ServiceAccount to {directory / 'gateway.kubeconfig'}
     (or run `kubegate init --cluster-kubeconfig FILE`); `kubegate docs readme`: "Connect your first real cluster"
  2. set public_url in {config} to the address your users reach the gateway at
  3. kubegate policy test {directory / 'policies'}      # the starter policies and their tests
  4. kubegate serve -c {config}
  5. kubegate kubeconfig -c {config} --user alice --group kubegate:viewers > alice.kubeconfig""")
    return 0


def _emulator(args: argparse.Namespace) -> int:
    from kubegate.emulator.__main__ import main as emulator_main

    forwarded = ["--port", str(args.port)] + (["--dir", str(args.dir)] if args.dir else [])
    return emulator_main(forwarded)


def _docs(args: argparse.Namespace) -> int:
    """The documentation that came with this kubegate: a topic's text, or the list of topics."""
    from kubegate import starter

    topics = {"readme": starter.README} | {p.stem: p for p in sorted(starter.DOCS.glob("*.md"))}
    if not args.topic:
        print(f"kubegate's documentation ({starter.DOCS}): kubegate docs TOPIC prints one\n")
        for name, doc in topics.items():
            first = next((ln.lstrip("# ").strip() for ln in doc.read_text().splitlines() if ln.strip()), "")
            print(f"  {name:<18} {first}")
        return 0
    path = topics.get(args.topic.removesuffix(".md"))
    if path is None:
        print(f"kubegate docs: no topic {args.topic!r}; the topics: {', '.join(topics)}", file=sys.stderr)
        return 1
    if args.path:
        print(path)
    else:
        print(path.read_text(), end="")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from kubegate.cli import demo

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubegate",
        description="A change risk-gating gateway in front of kube-apiserver: authenticates, "
                    "authorizes and risk-gates every API call, forwards what is allowed under "
                    "impersonation, and audits everything.",
    )
    parser.add_argument("--version", action="version", version=f"kubegate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                       help="settings file (default: $KUBEGATE_CONFIG or ./kubegate.yaml)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the gateway"))
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="text", choices=["text", "json"],
                       help="json: one JSON object per line (time, level, logger, message)")
    serve.add_argument("--workers", default="auto", metavar="N",
                       help="gateway processes sharing the port (needs store.redis_url when over 1); "
                            "auto (default): one per core with Redis, 1 with the memory store")
    # How the supervisor of `--workers N` starts each worker; not for people.
    serve.add_argument("--worker-slot", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--worker-port", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--worker-dir", default="", help=argparse.SUPPRESS)
    serve.set_defaults(handler=_serve)

    doctor = with_config(sub.add_parser("doctor", help="check every file, key, cluster, Redis and OIDC issuer "
                                                       "the settings name; exit 1 on any problem"))
    doctor.add_argument("-o", "--output", choices=("text", "json"), default="text")
    doctor.set_defaults(handler=_doctor)

    token = sub.add_parser("token", help="issue tokens signed by this gateway, revoke tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = with_config(token_sub.add_parser("issue", help="print a bearer token for a user"))
    issue.add_argument("--user", required=True)
    issue.add_argument("--group", action="append", default=[], help="a group (repeatable)")
    issue.add_argument("--ttl", type=parse_duration, default=3600, help="lifetime, e.g. 1h (default 1h)")
    issue.set_defaults(handler=_token_issue)
    from kubegate.cli import token as token_cli

    token_cli.add_parsers(token_sub)

    kc = with_config(sub.add_parser("kubeconfig", help="print a kubeconfig for a user, pointing at the gateway"))
    kc.add_argument("--user", required=True)
    kc.add_argument("--group", action="append", default=[], help="a group (repeatable)")
    kc.add_argument("--cluster", default=None, help="a cluster behind the gateway (default: the default one)")
    kc.add_argument("--namespace", default="default")
    kc.add_argument("--ttl", type=parse_duration, default=8 * 3600, help="token lifetime (default 8h)")
    kc.set_defaults(handler=_kubeconfig)

    pol = sub.add_parser("policy", help="check, test and replay the policy files")
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    check = pol_sub.add_parser("check", help="validate every policy file; file:line problems, exit 1 on any")
    check.add_argument("dir", nargs="?", default="policies",
                       help="a policy directory (authz or gates), or one holding authz/ and gates/ (default: policies)")
    check.add_argument("-o", "--output", choices=("text", "json", "github"), default="text",
                       help="text; json; github: workflow annotations on each problem's file and line")
    check.set_defaults(handler=_policy_check)
    ptest = pol_sub.add_parser("test", help="run the test cases in DIR/tests/*.yaml; exit 1 on a failure")
    from kubegate.cli import policy_test as policy_test_cli
    policy_test_cli.add_arguments(ptest)
    ptest.set_defaults(handler=_policy_test)
    replay = pol_sub.add_parser("replay", help="which recorded requests a policy change would decide differently")
    from kubegate.cli import policy_replay as policy_replay_cli
    policy_replay_cli.add_arguments(replay)
    replay.set_defaults(handler=_policy_replay)

    from kubegate.cli import access as access_cli

    access_cli.add_parser(sub, parse_duration)

    from kubegate.cli import approvals as approvals_cli, brake as brake_cli, breaker as breaker_cli
    from kubegate.cli import preview as preview_cli, webshell as webshell_cli

    breaker_cli.add_parser(sub)
    brake_cli.add_parser(sub, parse_duration)
    approvals_cli.add_parser(sub)
    preview_cli.add_parser(sub)
    webshell_cli.add_parser(sub)

    from kubegate.cli import audit as audit_cli

    audit_cli.add_parser(sub)

    init = sub.add_parser("init", help="write a starter settings file and policies to edit into DIR")
    init.add_argument("dir", nargs="?", default=".", help="where to write them (default: here)")
    init.add_argument("--cluster-kubeconfig", metavar="FILE",
                      help="the gateway's own kubeconfig for the cluster (default: DIR/gateway.kubeconfig, to be written)")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.set_defaults(handler=_init)

    docs = sub.add_parser("docs", help="the documentation installed with kubegate (list the topics, or print one)")
    docs.add_argument("topic", nargs="?", help="e.g. change-gates, configuration, security")
    docs.add_argument("--path", action="store_true", help="print the topic's file path instead of its text")
    docs.set_defaults(handler=_docs)

    demo = sub.add_parser("demo", help="run kubegate in front of an emulated cluster and print a kubeconfig")
    demo.add_argument("--dir", default=None, help="state directory (default: ./state/demo)")
    demo.add_argument("--port", type=int, default=8443, help="gateway port (default 8443; 0 for any)")
    demo.add_argument("--webshell-port", type=int, default=8444, help="the webshell's port (default 8444; 0 for any)")
    demo.add_argument("--no-webshell", action="store_true", help="without the browser terminal")
    demo.add_argument("--policies", metavar="DIR", help="serve the policies in DIR (authz/, gates/), hot-reloaded; a "
                      "DIR that does not exist gets a copy of the starter set first")
    demo.set_defaults(handler=_demo)

    version = sub.add_parser("version", help="kubegate's version (and what it runs on)")
    version.add_argument("-o", "--output", choices=("text", "json"), default="text")
    version.set_defaults(handler=_version)

    completion = sub.add_parser("completion", help="a shell completion script: source <(kubegate completion bash)")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    completion.set_defaults(handler=_completion)

    emu = sub.add_parser("emulator", help="run only the Kubernetes API emulator (tests, demos)")
    emu.add_argument("--port", type=int, default=0)
    emu.add_argument("--dir", default=None)
    emu.set_defaults(handler=_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (`kubegate audit search ... | head`): stop quietly, as a shell tool does.
        # (stdout is pointed at /dev/null first, so the interpreter's final flush does not fail again.)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a process a pipe ended
