"""What reading a request the way kube-apiserver reads it costs, per request, against the readers before.

    .venv/bin/python bench/parity.py [--seconds 1.5]

Each row times one step of the classify stage on a typical request, in-process on one core, and
prints it next to the reader kubegate used before parser parity (measured in the same run):

- query: Go-rule parse + canonical re-encoding (`Query.parse` + `encode`) vs `urllib.parse.parse_qs`
  (whose raw string was forwarded as is);
- JSON / YAML body: `decoders.read_json` / `read_yaml` (duplicate keys, go-yaml scalar rules) vs
  `json.loads` / `yaml.safe_load`;
- patch: the object a strategic merge / JSON patch leaves on a live Deployment (`patches.apply`;
  the live object's read is an upstream GET, not counted here) vs the patch fragment alone;
- DeleteOptions from the body (`deleteoptions.for_delete`) vs the query flag alone.

Figures are microseconds per operation and the ratio new/old; absolute numbers vary per machine.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable
from urllib.parse import parse_qs

import yaml

from kubegate.gateway.request import bodies, decoders, deleteoptions, patches
from kubegate.gateway.request.query import Query

QUERY = "labelSelector=app%3Dweb%2Ctier+in+%28front%2Cback%29&fieldSelector=status.phase%3DRunning&limit=500"
DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web", "tier": "front"},
                 "annotations": {"deployment.kubernetes.io/revision": "7"}, "resourceVersion": "12345"},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                 {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                  "env": [{"name": f"VAR{i}", "value": str(i)} for i in range(10)],
                  "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}},
                 {"name": "sidecar", "image": "envoy:1.30"}]}}},
}
JSON_BODY = json.dumps(DEPLOYMENT).encode()
YAML_BODY = yaml.safe_dump(DEPLOYMENT).encode()
SMP = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}}
JSON_PATCH = [{"op": "replace", "path": "/spec/replicas", "value": 5},
              {"op": "add", "path": "/metadata/labels/canary", "value": "true"}]
DELETE_BODY = b'{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}'


def per_op(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call, best of three runs of about `seconds`/3 each."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.05:
        fn()
        n += 1
    batch = max(1, int(n * seconds / 3 / 0.05))
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - t) / batch)
    return best * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    args = parser.parse_args()
    smp_body = bodies.read("application/strategic-merge-patch+json", json.dumps(SMP).encode())
    jp_body = bodies.read("application/json-patch+json", json.dumps(JSON_PATCH).encode())
    rows = [
        ("query: parse (+ re-encode)", lambda: Query.parse(QUERY).encode(), lambda: parse_qs(QUERY)),
        ("JSON body, Deployment", lambda: decoders.read_json(JSON_BODY), lambda: json.loads(JSON_BODY)),
        ("YAML body, Deployment", lambda: decoders.read_yaml(YAML_BODY), lambda: yaml.safe_load(YAML_BODY)),
        ("strategic merge patch result", lambda: patches.apply("strategic-merge-patch", DEPLOYMENT, smp_body.data),
         lambda: smp_body.obj),
        ("JSON patch result", lambda: patches.apply("json-patch", DEPLOYMENT, jp_body.data), lambda: jp_body.obj),
        ("DeleteOptions (body first)", lambda: deleteoptions.for_delete(Query(), "application/json", DELETE_BODY),
         lambda: "dryRun=All" in ""),
    ]
    print(f"{'step':32} {'now us':>9} {'before us':>10} {'ratio':>7}")
    for name, new, old in rows:
        now, before = per_op(new, args.seconds), per_op(old, args.seconds)
        print(f"{name:32} {now:9.1f} {before:10.2f} {now / before:7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
