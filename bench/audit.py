"""What recording a request costs the gateway, per event, in-process on one core.

    .venv/bin/python bench/audit.py [--seconds 1.5]

Rows (microseconds per event, and as a ratio to writing the bare event line, the cheapest
record there is):
- plain line: json.dumps of a Metadata event and a flushed write (the recording floor);
- chained sink, Metadata: the local sink as the gateway runs it (hash chain, head file, reopen check);
- shared by two writers taking turns: the same log written by two sinks in turn (`serve --workers`),
  each first picking the chain up where the other left it;
- redaction + bounds, RequestResponse: turning a Deployment request and response into event objects;
- audit center sink: handing an event to the spool (the request path's share; disk and network
  are the sender thread's).

    .venv/bin/python bench/audit.py --e2e [--requests 2000] [--rounds 5]

End to end: one kubegate process per audit setting in front of one emulator, sequential GETs over
one keep-alive connection each, rounds interleaved; median latency as a ratio to the gateway with
audit off (an audit policy of level None). Rows: off; Metadata (the default: hash-chained local
file); RequestResponse (request and response objects recorded); Metadata + audit center (the
center unreachable, so every event also goes to the disk spool).

    .venv/bin/python bench/audit.py --write-ahead [--requests 1000] [--rounds 5]

What a change's write-ahead record costs (docs/audit.md#write-ahead): one kubegate per
`audit.sync` mode, sequential PATCHes (a label, alternating, so each changes the object) over one
keep-alive connection; median latency as a ratio to the same PATCH with audit off (no record at
all, written ahead or not), with the write-ahead record's own share printed beside it: the rows'
difference from "Metadata, no write-ahead" — kubegate before write-ahead, kept as a hidden
setting for this measurement alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity import DEPLOYMENT, per_op  # noqa: E402  (one timing helper for the micro-benchmarks)
from latency import Target as GetTimer  # noqa: E402  (one keep-alive HTTPS client timing GETs)
from stack import Stack  # noqa: E402  (the benchmarks' shared set-up)

from kubegate.audit import redact  # noqa: E402
from kubegate.audit.sink import JsonlSink  # noqa: E402
from kubegate.audit.webhook import Target, WebhookSink  # noqa: E402

EVENT = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
         "auditID": "5d5b3c0e-9b1f-4d8e-8f57-0f9e4c5b8a11", "stage": "ResponseComplete",
         "requestURI": "/apis/apps/v1/namespaces/shop/deployments/web", "verb": "get",
         "user": {"username": "alice", "groups": ["team-shop", "system:authenticated"]},
         "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.37.1", "responseStatus": {"metadata": {}, "code": 200},
         "objectRef": {"resource": "deployments", "namespace": "shop", "name": "web", "apiGroup": "apps",
                       "apiVersion": "v1"},
         "requestReceivedTimestamp": "2026-11-29T12:00:00.000000Z", "stageTimestamp": "2026-11-29T12:00:00.001000Z",
         "annotations": {"kubegate.io/decision": "allow", "authorization.k8s.io/decision": "allow",
                         "authorization.k8s.io/reason": "p, role:developer, *:shop, deployments.apps, *, *, allow"}}


def _interleaved(timers: list[tuple[str, Callable[[], float]]], warm: int, requests: int,
                 rounds: int) -> dict[str, list[float]]:
    """Each timer called WARM times, then REQUESTS times in ROUNDS interleaved rounds: name -> seconds."""
    for _, call in timers:
        for _ in range(warm):
            call()
    samples: dict[str, list[float]] = {name: [] for name, _ in timers}
    for _ in range(rounds):
        for name, call in timers:
            samples[name] += [call() for _ in range(max(1, requests // rounds))]
    return samples


def _report(samples: dict[str, list[float]], base_name: str, before_name: str | None) -> None:
    """Median, p99, ratio to BASE_NAME and the time added over it (or over BEFORE_NAME, with its ratio)."""
    base = statistics.median(samples[base_name])
    before = statistics.median(samples[before_name]) if before_name else base
    print(f"{'audit setting':26} {'median ms':>10} {'p99 ms':>8} {'x off':>7}"
          + (f" {'x before':>9} {'added over before ms':>21}" if before_name else f" {'added ms':>9}"))
    for name, values in samples.items():
        values.sort()
        med = statistics.median(values)
        print(f"{name:26} {med * 1e3:10.3f} {values[int(len(values) * .99)] * 1e3:8.3f} {med / base:7.2f}"
              + (f" {med / before:9.2f} {(med - before) * 1e3:21.3f}" if before_name else f" {(med - base) * 1e3:9.3f}"))


def _emulator_with_bench_configmap(stack: Stack) -> None:
    """Start the stack's emulator and create default/bench, the object the rows read or patch."""
    stack.start_emulator()
    emu = http.client.HTTPSConnection("127.0.0.1", int(stack.upstream_url.rsplit(":", 1)[1]),
                                      context=ssl.create_default_context(cafile=str(stack.upstream_ca)))
    emu.request("POST", "/api/v1/namespaces/default/configmaps",
                body=json.dumps({"metadata": {"name": "bench"}, "data": {"k": "v"}}),
                headers={"Authorization": f"Bearer {stack.admin_token}", "Content-Type": "application/json"})
    assert emu.getresponse().status == 201


def end_to_end(requests: int, rounds: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="kubegate-bench-audit-"))
    stack = Stack(work)
    try:
        _emulator_with_bench_configmap(stack)
        policies = {}
        for level in ("None", "RequestResponse"):
            policies[level] = work / f"policy-{level}.yaml"
            policies[level].write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                                       "rules": [{"level": level}]}))
        variants = {
            "audit off": {"policy_file": str(policies["None"])},
            "Metadata (default)": {},
            "RequestResponse": {"policy_file": str(policies["RequestResponse"])},
            "Metadata + audit center": {"webhook": {"url": "https://127.0.0.1:9/audit", "batch_seconds": 0.2}},
        }
        targets = []
        for n, (name, audit) in enumerate(variants.items()):
            port = stack.start_gateway(f"gw{n}", audit=audit)
            targets.append((name, GetTimer(name, port, stack.gateway_ca, stack.token("bench", ["kubegate:viewers"]))))
        samples = _interleaved([(name, client.get) for name, client in targets], 200, requests, rounds)
        _report(samples, "audit off", None)
        print(f"\n{len(samples['audit off'])} GETs per setting in {rounds} interleaved rounds")
        return 0
    finally:
        stack.stop()


class Patcher:
    """PATCHes of one ConfigMap over one keep-alive HTTPS connection, timed."""

    def __init__(self, port: int, ca: Path, token: str) -> None:
        self.token, self.flip = token, 0
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca)))

    def patch(self) -> float:
        import time

        self.flip ^= 1
        body = json.dumps({"metadata": {"labels": {"bench": str(self.flip)}}})
        start = time.perf_counter()
        self.conn.request("PATCH", "/api/v1/namespaces/default/configmaps/bench", body=body,
                          headers={"Authorization": f"Bearer {self.token}",
                                   "Content-Type": "application/merge-patch+json"})
        resp = self.conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            raise SystemExit(f"PATCH: {resp.status} {data[:300]!r}")
        return elapsed


def write_ahead(requests: int, rounds: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="kubegate-bench-write-ahead-"))
    stack = Stack(work)
    try:
        _emulator_with_bench_configmap(stack)
        off = work / "policy-None.yaml"
        off.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None"}]}))
        variants = {"audit off": ({"policy_file": str(off)}, {}),
                    "Metadata, no write-ahead": ({}, {"KUBEGATE_BENCH_NO_WRITE_AHEAD": "1"}),
                    "write-ahead, sync none": ({"sync": "none"}, {}),
                    "write-ahead, sync batch": ({"sync": "batch"}, {}),
                    "write-ahead, sync always": ({"sync": "always"}, {})}
        targets = []
        for n, (name, (audit, env)) in enumerate(variants.items()):
            port = stack.start_gateway(f"gw{n}", audit=audit, env=env)
            targets.append((name, Patcher(port, stack.gateway_ca, stack.token("bench", ["kubegate:cluster-admins"]))))
        samples = _interleaved([(name, client.patch) for name, client in targets], 100, requests, rounds)
        _report(samples, "audit off", "Metadata, no write-ahead")
        print(f"\n{len(samples['audit off'])} PATCHes per setting in {rounds} interleaved rounds; the audit log on "
              f"{work} (TMPDIR chooses the filesystem: fdatasync costs what its disk costs)")
        return 0
    finally:
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--e2e", action="store_true", help="whole gateways, audit off/on, over HTTPS")
    parser.add_argument("--write-ahead", action="store_true", help="PATCH latency per audit.sync mode")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.e2e:
        return end_to_end(args.requests, args.rounds)
    if args.write_ahead:
        return write_ahead(args.requests, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        plain = open(Path(tmp) / "plain.jsonl", "a", encoding="utf-8")

        def plain_line() -> None:
            plain.write(json.dumps(EVENT, separators=(",", ":"), sort_keys=True) + "\n")
            plain.flush()

        sink = JsonlSink(Path(tmp) / "audit.jsonl", rotate_bytes=0, rotate_seconds=0)

        def objects() -> None:
            for obj in (DEPLOYMENT, DEPLOYMENT):
                redact.bounded(redact.without_managed_fields(redact.redact(obj, resource="deployments")), 65536)

        # `serve --workers 2`: two writers of one log taking turns, each picking the chain up after
        # the other's line (a batch of one event each: the worst case).
        turns = [JsonlSink(Path(tmp) / "shared.jsonl", shared=True) for _ in range(2)]
        turn = [0]

        def shared_write() -> None:
            turn[0] ^= 1
            turns[turn[0]].write(EVENT)

        center = WebhookSink(Target("https://127.0.0.1:9/audit"), Path(tmp) / "spool", batch_seconds=60)
        base = per_op(plain_line, args.seconds)
        rows = [("plain line (floor)", base), ("chained sink, Metadata", per_op(lambda: sink.write(EVENT), args.seconds)),
                ("shared by two writers taking turns", per_op(shared_write, args.seconds)),
                ("redaction + bounds, RequestResponse", per_op(objects, args.seconds)),
                ("audit center sink (handing over)", per_op(lambda: center.write(EVENT), args.seconds))]
        print(f"{'step':38} {'us/event':>9} {'x floor':>8}")
        for name, us in rows:
            print(f"{name:38} {us:9.1f} {us / base:8.1f}")
        sink.close()
        for each in turns:
            each.close()
        center.close()
        plain.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
