"""What recording a request costs the gateway, per event, in-process on one core.

    .venv/bin/python bench/audit.py [--seconds 1.5]

Rows (microseconds per event, and as a ratio to writing the bare event line, the cheapest
record there is):
- plain line: json.dumps of a Metadata event and a flushed write (the recording floor);
- chained sink, Metadata: the local sink as the gateway runs it (hash chain, head file, reopen check);
- redaction + bounds, RequestResponse: turning a Deployment request and response into event objects;
- audit center sink: handing an event to the spool (the request path's share; disk and network
  are the sender thread's).
The gateway's end-to-end cost with audit is part of bench/latency.py's kubegate row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity import DEPLOYMENT, per_op  # noqa: E402  (one timing helper for the micro-benchmarks)

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = open(Path(tmp) / "plain.jsonl", "a", encoding="utf-8")

        def plain_line() -> None:
            plain.write(json.dumps(EVENT, separators=(",", ":"), sort_keys=True) + "\n")
            plain.flush()

        sink = JsonlSink(Path(tmp) / "audit.jsonl", rotate_bytes=0, rotate_seconds=0)

        def objects() -> None:
            for obj in (DEPLOYMENT, DEPLOYMENT):
                redact.bounded(redact.without_managed_fields(redact.redact(obj, resource="deployments")), 65536)

        center = WebhookSink(Target("https://127.0.0.1:9/audit"), Path(tmp) / "spool", batch_seconds=60)
        base = per_op(plain_line, args.seconds)
        rows = [("plain line (floor)", base), ("chained sink, Metadata", per_op(lambda: sink.write(EVENT), args.seconds)),
                ("redaction + bounds, RequestResponse", per_op(objects, args.seconds)),
                ("audit center sink (handing over)", per_op(lambda: center.write(EVENT), args.seconds))]
        print(f"{'step':38} {'us/event':>9} {'x floor':>8}")
        for name, us in rows:
            print(f"{name:38} {us:9.1f} {us / base:8.1f}")
        sink.close()
        center.close()
        plain.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
