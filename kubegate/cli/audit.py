"""`kubegate audit verify|tail|search`: the audit log, for auditors and on-call.

- `verify FILE...`: is the log as the gateway wrote it? Files oldest first (a rotated
  `audit.jsonl.<time>` before the live `audit.jsonl`; they are put in that order here). Exit 0
  when the chain holds, 1 with one line per problem (FILE:LINE: what happened to that line).
- `tail [FILE] [-n N] [-f]`: the last events, one line each; `-f` follows new ones.
- `search FILE... [--user U] [--verb V] [--resource R] [--namespace N] [--decision D] [--session S] [--since T]
  [--until T] [--incomplete] [-o json]`: the events that match every filter given (`--incomplete`:
  only changes written ahead whose completion was never written: the gateway stopped meanwhile).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator

from kubegate.audit import chain, events


def _ordered(paths: list[Path]) -> list[Path]:
    """Rotated files (FILE.<UTC time>) before the live FILE they came from."""
    def key(p: Path) -> tuple[str, int, str]:
        base, _, stamp = p.name.partition(".jsonl.")
        return (str(p.parent / base), 1 if not stamp else 0, stamp)
    return sorted(paths, key=key)


def verify(args: argparse.Namespace) -> int:
    paths = _ordered([Path(p) for p in args.files])
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"kubegate: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    problems = chain.verify(paths)
    live = paths[-1]
    problems += chain.check_head(live, live.with_name(live.name + ".head"))
    if args.recordings:
        problems += _check_recordings(paths, Path(args.recordings))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {', '.join(str(p) for p in paths)}", file=sys.stderr)
        return 1
    lines = sum(1 for p in paths for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    checked = f"; {len(list(Path(args.recordings).glob('*.cast')))} recording(s) in {args.recordings} as recorded" \
        if args.recordings else ""
    print(f"OK: {lines} events in {len(paths)} file(s), chained without a break{checked}")
    open_ = incomplete(_events(paths))
    if open_:
        print(f"{len(open_)} request(s) written ahead without a completion: forwarded (or about to be) when the "
              "gateway stopped; `kubegate audit search --incomplete` lists them")
    return 0


def incomplete(found: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """The RequestReceived records (written ahead of a change) whose request has no later event:
    the gateway stopped between forwarding it and answering."""
    waiting: dict[str, dict[str, Any]] = {}
    for e in found:
        audit_id = str(e.get("auditID", ""))
        if e.get("stage") == "RequestReceived":
            waiting[audit_id] = e
        else:
            waiting.pop(audit_id, None)
    return list(waiting.values())


def _check_recordings(paths: list[Path], directory: Path) -> list[str]:
    """Each session recording the log vouches for (its SHA-256 in the session's last event) is there
    and unchanged."""
    from kubegate.audit import recording

    vouched: dict[str, str] = {}
    for event in _events(paths):
        a = event.get("annotations") or {}
        name, digest = a.get("kubegate.io/recording"), a.get("kubegate.io/recording-sha256")
        if name and digest and "/" not in name:
            vouched[name] = digest
    problems = []
    for name, digest in sorted(vouched.items()):
        path = directory / name
        if not path.is_file():
            problems.append(f"{path}: the recording the audit log vouches for is missing")
        elif recording.file_sha256(path) != digest:
            problems.append(f"{path}: changed after the session (its SHA-256 is not the one the audit log records)")
    return problems


def _events(paths: list[Path]) -> Iterator[dict[str, Any]]:
    return events.read(paths)


def rules_of(annotations: dict[str, str]) -> list[str]:
    """The rules that decided a request: authorization's refusing rule, change rules, freeze windows,
    alert gates, rollouts, the brake."""
    out = [k.removeprefix("kubegate.io/rule.") for k in annotations if k.startswith("kubegate.io/rule.")]
    if annotations.get("authorization.k8s.io/decision") == "forbid":
        out.insert(0, annotations.get("kubegate.io/authz-rule", "none"))
    out += [annotations[k] for k in ("kubegate.io/freeze",) if k in annotations]
    out += [k.removeprefix("kubegate.io/alert-gate.") for k in annotations if k.startswith("kubegate.io/alert-gate.")]
    out += [k.removeprefix("kubegate.io/rollout.") for k in annotations if k.startswith("kubegate.io/rollout.")]
    out += [f"brake {annotations['kubegate.io/brake']}"] if "kubegate.io/brake" in annotations else []
    return out


def outcome(e: dict[str, Any]) -> str:
    """What happened to the request, in words: allowed, answered by kubegate, held, refused (by what)."""
    annotations = e.get("annotations") or {}
    decision = annotations.get("kubegate.io/decision", "")
    stage = annotations.get("kubegate.io/stage", "")
    approval = annotations.get("kubegate.io/approval", "")
    rules = rules_of(annotations)
    by = f" by {stage}" + (f" ({', '.join(rules)})" if rules else "") if stage else ""
    if decision == "allow":
        return "allowed" + (f" (approval {approval})" if approval.endswith(" used") else "")
    if decision == "local":
        return f"answered by kubegate ({stage})" if stage else "answered by kubegate"
    if approval.endswith(" pending"):
        return f"held for approval{by}: ticket {approval.split()[0]}"
    if decision == "error":
        return f"failed{by}"
    if decision == "deny":
        return f"refused{by}"
    return decision or "?"


def line(e: dict[str, Any]) -> str:
    """One event, as on-call reads it."""
    ref = e.get("objectRef") or {}
    what = "/".join(x for x in (ref.get("resource", ""), ref.get("subresource", "")) if x) or e.get("requestURI", "")
    where = f"{ref['namespace']}/" if ref.get("namespace") else ""
    name = ref.get("name", "")
    code = (e.get("responseStatus") or {}).get("code", "")
    return (f"{e.get('stageTimestamp', '')[:23]}  {code!s:<4} {e.get('user', {}).get('username', ''):<20} "
            f"{e.get('verb', ''):<16} {what} {where}{name}  {outcome(e)}")


def _time(text: str) -> str:
    """An ISO time as the events write it (UTC, Z), for comparing as text."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time (2026-11-29T10:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def search(args: argparse.Namespace) -> int:
    paths = _ordered([Path(p) for p in args.files])
    found = 0
    summary: dict[str, Counter[str]] = defaultdict(Counter)
    for e in (incomplete(_events(paths)) if args.incomplete else _events(paths)):
        ref = e.get("objectRef") or {}
        annotations = e.get("annotations") or {}
        checks = [(args.user, e.get("user", {}).get("username")), (args.verb, e.get("verb")),
                  (args.resource, ref.get("resource")), (args.namespace, ref.get("namespace")),
                  (args.decision, annotations.get("kubegate.io/decision"))]
        if any(want is not None and have != want for want, have in checks):
            continue
        sessions = ((e.get("user") or {}).get("extra") or {}).get("kubegate.io/session") or []
        if args.session is not None and args.session not in sessions:
            continue
        if args.stage is not None and annotations.get("kubegate.io/stage") != args.stage:
            continue
        if args.rule is not None and args.rule not in rules_of(annotations):
            continue
        stamp = e.get("requestReceivedTimestamp", "")
        if (args.since and stamp < args.since) or (args.until and stamp > args.until):
            continue
        found += 1
        if args.summary:
            _count(summary, e, annotations)
            continue
        print(json.dumps(e, separators=(",", ":")) if args.output == "json" else line(e))
    if args.summary:
        _print_summary(summary, found, args.output)
    elif args.output != "json":
        print(f"{found} event(s)", file=sys.stderr)
    return 0


def _count(summary: dict[str, Counter[str]], e: dict[str, Any], annotations: dict[str, str]) -> None:
    summary["outcome"][outcome(e).split(" (")[0].split(":")[0]] += 1
    summary["stage"][annotations.get("kubegate.io/stage") or "-"] += 1
    for rule in rules_of(annotations):
        summary["rule"][rule] += 1
    summary["user"][(e.get("user") or {}).get("username", "")] += 1


def _print_summary(summary: dict[str, Counter[str]], found: int, output: str) -> None:
    if output == "json":
        print(json.dumps({"events": found, **{k: dict(v.most_common()) for k, v in summary.items()}}, indent=2))
        return
    print(f"{found} event(s)")
    for title, key in (("by outcome", "outcome"), ("by refusing stage", "stage"), ("by rule", "rule"),
                       ("by user", "user")):
        counts = summary[key].most_common(20)
        if counts:
            print(f"\n{title}:")
            width = max(len(k) for k, _ in counts)
            print("\n".join(f"  {k:<{width}}  {n}" for k, n in counts))


def tail(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"kubegate: no such file: {path}", file=sys.stderr)
        return 2
    for e in list(_events([path]))[-args.lines:]:
        print(line(e), flush=True)
    if not args.follow:
        return 0
    with open(path, encoding="utf-8") as f:
        f.seek(0, 2)
        inode = path.stat().st_ino
        try:
            while True:
                text = f.readline()
                if text:
                    try:
                        print(line(json.loads(text)), flush=True)
                    except ValueError:
                        pass
                    continue
                time.sleep(0.2)
                try:
                    if path.stat().st_ino != inode:  # rotated: follow the new file
                        f.close()
                        f = open(path, encoding="utf-8")
                        inode = path.stat().st_ino
                except FileNotFoundError:
                    pass
        except KeyboardInterrupt:
            return 0


def play(args: argparse.Namespace) -> int:
    from kubegate.audit import recording

    path = Path(args.session)
    if not path.is_file():
        path = Path(args.dir) / f"{args.session.removesuffix('.cast')}.cast"
    if not path.is_file():
        print(f"kubegate: no recording {args.session!r} (looked for {path})", file=sys.stderr)
        return 2
    if args.verify_with:
        wanted = [e.get("annotations", {}).get("kubegate.io/recording-sha256") for e in
                  _events(_ordered([Path(p) for p in args.verify_with]))
                  if e.get("annotations", {}).get("kubegate.io/recording") == path.name]
        have = recording.file_sha256(path)
        if not wanted or wanted[-1] is None:
            print(f"kubegate: the audit log does not vouch for {path.name}: no event records its hash", file=sys.stderr)
            return 1
        if wanted[-1] != have:
            print(f"kubegate: {path} was changed after the session: its SHA-256 is not the one the audit log "
                  "records", file=sys.stderr)
            return 1
    recording.play(path, lambda text: (sys.stdout.write(text), sys.stdout.flush()), speed=max(0.0, args.speed))
    return 0


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit log: verify its hash chain, tail it, search it")
    acts = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = acts.add_parser("verify", help="check the hash chain of audit log files (oldest first); exit 1 on a break")
    v.add_argument("files", nargs="+", help="audit log files: rotated ones and the live one")
    v.add_argument("--recordings", metavar="DIR",
                   help="also check that every session recording the log vouches for is in DIR, unchanged")
    v.set_defaults(handler=verify)
    t = acts.add_parser("tail", help="the last events of an audit log, one line each")
    t.add_argument("file", nargs="?", default="state/audit.jsonl")
    t.add_argument("-n", "--lines", type=int, default=20)
    t.add_argument("-f", "--follow", action="store_true", help="go on printing new events")
    t.set_defaults(handler=tail)
    s = acts.add_parser("search", help="events matching every filter given")
    s.add_argument("files", nargs="+")
    s.add_argument("--incomplete", action="store_true",
                   help="only changes written ahead that never completed (the gateway stopped meanwhile)")
    s.add_argument("--session", help="a session id: the requests made with that session's token (a webshell terminal's)")
    for flag in ("user", "verb", "resource", "namespace"):
        s.add_argument(f"--{flag}")
    s.add_argument("--decision", choices=["allow", "deny", "error", "local"])
    s.add_argument("--stage", help="the stage that ended the request (authz, rules, approvals, limits, ...)")
    s.add_argument("--rule", help="a rule that decided it (an authz rule id, a change rule, a freeze window, ...)")
    s.add_argument("--summary", action="store_true", help="counts by outcome, refusing stage, rule and user")
    s.add_argument("--since", type=_time, help="ISO time, e.g. 2026-11-29T10:00:00Z")
    s.add_argument("--until", type=_time)
    s.add_argument("-o", "--output", choices=["line", "json"], default="line")
    s.set_defaults(handler=search)
    p = acts.add_parser("play", help="replay a recorded exec/attach session in this terminal")
    p.add_argument("session", help="a recording file, or the session's audit ID")
    p.add_argument("--dir", default="state/recordings", help="where recordings are (default state/recordings)")
    p.add_argument("--speed", type=float, default=1.0, help="2 plays twice as fast; 0 without pauses")
    p.add_argument("--verify-with", nargs="+", metavar="LOG", help="audit log files that must vouch for the recording")
    p.set_defaults(handler=play)
