"""`kubegate policy replay` throughput: recorded requests judged per second, in-process, on one core.

    .venv/bin/python bench/replay.py [--events 50000] [--seed 1]

The log is generated: audit.k8s.io/v1 events as the gateway writes them (the starter policy's
annotations, a request object on one write in two), by 200 users in 8 groups over 3 clusters,
30 namespaces and a skewed mix of verbs and resources. It is replayed with the starter policy
against itself (both sides judged, as `--against` does) and against the record. The baseline in
the same run is reading the log alone (JSON per line, one event per auditID), so the figures are
also given as the replay's cost over reading.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from kubegate.gateway import replay
from kubegate.gateway.authz import policy as authz_policy
from kubegate.gateway.gates import policy as gate_policy

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ["kubegate:viewers", "team-shop", "kubegate:sre", "kubegate:cluster-admins", "team-web", "team-data",
          "kubegate:oncall", ""]
RESOURCES = [("pods", ""), ("deployments", "apps"), ("configmaps", ""), ("services", ""), ("secrets", ""),
             ("jobs", "batch"), ("nodes", ""), ("namespaces", "")]
VERBS = ["get", "list", "watch", "get", "list", "create", "update", "patch", "delete"]
CLUSTERS = ["hz-1", "sh-2", "fra-3"]
NAMESPACES = [f"shop-{i}" for i in range(10)] + [f"web-{i}" for i in range(10)] + [f"prod-{i}" for i in range(10)]


def generate(path: Path, n: int, rng: random.Random) -> None:
    users = [(f"user-{u}", [g for g in rng.sample(GROUPS, 2) if g] + ["system:authenticated"]) for u in range(200)]
    start = datetime(2026, 11, 2, tzinfo=timezone.utc)
    with open(path, "w") as f:
        for i in range(n):
            user, groups = users[min(int(rng.paretovariate(1.2)) - 1, len(users) - 1)]
            resource, group = rng.choice(RESOURCES)
            verb = rng.choice(VERBS)
            cluster_scoped = resource in ("nodes", "namespaces")
            ns = "" if cluster_scoped else rng.choice(NAMESPACES)
            ref = {"resource": resource, "apiGroup": group, "apiVersion": "v1", "namespace": ns,
                   "name": f"obj-{rng.randrange(50)}" if verb not in ("list", "watch", "create") else ""}
            at = (start + timedelta(seconds=i * 12)).isoformat().replace("+00:00", "Z")
            event = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": str(uuid.uuid4()),
                     "stage": "ResponseComplete", "requestURI": f"/api/v1/{resource}", "verb": verb,
                     "user": {"username": user, "groups": groups}, "objectRef": {k: v for k, v in ref.items() if v},
                     "requestReceivedTimestamp": at, "stageTimestamp": at,
                     "annotations": {"kubegate.io/cluster": rng.choice(CLUSTERS), "kubegate.io/decision": "allow",
                                     "authorization.k8s.io/decision": rng.choice(["allow", "allow", "forbid"]),
                                     "kubegate.io/authz-rule": "viewers-read"}}
            if verb in ("create", "update") and rng.random() < 0.5:
                event["requestObject"] = {"spec": {"replicas": rng.choice([0, 1, 3]), "unschedulable": rng.random() < .1}}
            f.write(json.dumps(event) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="kubegate-replay-bench-")) / "audit.jsonl"
    generate(log, args.events, random.Random(args.seed))
    ps = authz_policy.load_checked(ROOT / "policies" / "authz")
    gates = gate_policy.load_checked(ROOT / "policies" / "gates")

    def judge() -> replay.Judge:
        return replay.Judge(ps, gates.change, name="starter")

    start = time.perf_counter()
    requests, _ = replay.read([log])
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    replay.replay([log], judge())
    record_s = time.perf_counter() - start
    start = time.perf_counter()
    both = replay.replay([log], judge(), judge())
    both_s = time.perf_counter() - start
    n = len(requests)
    print(f"log: {n:,} requests ({log.stat().st_size / 1e6:.1f} MB); reading alone: {n / read_s:,.0f} events/s")
    # (The generated record's decisions are drawn at random: its flips say nothing and are not shown.)
    print(f"replay against the record: {n / record_s:,.0f} events/s ({record_s / read_s:.1f}x reading)")
    print(f"replay against a second set (--against): {n / both_s:,.0f} events/s ({both_s / read_s:.1f}x reading), "
          f"{len(both.flips):,} flips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
