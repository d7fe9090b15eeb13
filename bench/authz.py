"""Authorization decisions per second, in-process, on one core.

    .venv/bin/python bench/authz.py [--requests 200000] [--seed 1]

The policy is the starter set plus a generated organisation: 1,000 users in 100 team groups,
each team a developer in 2 of 50 namespaces in each of 3 clusters, every tenth team also viewer
everywhere, and 200 per-user rules. Requests follow a skewed (Zipf-like) mix over users, verbs,
resources and namespaces, as controllers and people repeat the same calls. Two figures:

- cold: every decision evaluated by Casbin (caches dropped each time): the cost of a miss;
- warm: the mixed stream through the caches, as the gateway runs;
- hot: the same stream again, every decision a cache hit.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from kubegate.gateway.authz import policy
from kubegate.gateway.authz.authorizer import Authorizer
from kubegate.gateway.identity.identity import Identity
from kubegate.gateway.request.info import RequestInfo

ROOT = Path(__file__).resolve().parent.parent
CLUSTERS = ["hz-1", "sh-2", "fra-3"]
NAMESPACES = [f"team-{i:02d}" for i in range(50)]
RESOURCES = [("pods", ""), ("deployments", "apps"), ("configmaps", ""), ("services", ""), ("jobs", "batch"),
             ("secrets", ""), ("events", ""), ("replicasets", "apps")]
VERBS = ["get", "list", "watch", "get", "list", "create", "update", "patch", "delete"]


def generate(directory: Path, rng: random.Random) -> None:
    shutil.copytree(ROOT / "policies" / "authz", directory)
    lines = []
    for t in range(100):
        for ns in rng.sample(NAMESPACES, 2):
            lines.append(f"g, group:team-{t}, role:developer, *:{ns}")
        if t % 10 == 0:
            lines.append(f"g, group:team-{t}, role:viewer, *:*")
    for u in range(200):
        ns = rng.choice(NAMESPACES)
        lines.append(f"p, user:user-{u}, {rng.choice(CLUSTERS)}:{ns}, secrets, get|list, *, allow")
    (directory / "org.csv").write_text("\n".join(lines) + "\n")


def zipf_pick(rng: random.Random, items: list, s: float = 1.1):  # type: ignore[no-untyped-def]
    weights = [1 / (i + 1) ** s for i in range(len(items))]
    return rng.choices(items, weights)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kubegate-authz-bench-")) / "authz"
    generate(work, rng)
    ps = policy.load_checked(work)
    authorizer = Authorizer(ps)
    users = [Identity(f"user-{u}", tuple(f"team-{t}" for t in rng.sample(range(100), 3))) for u in range(1000)]
    rng.shuffle(users)
    # Each user works mostly in a few namespaces of their own (a working set), like people and controllers do.
    home = {u.user: rng.sample(NAMESPACES, 3) for u in users}
    weights = [1 / (i + 1) ** 0.8 for i in range(len(users))]

    def request() -> tuple[Identity, str, RequestInfo]:
        user = rng.choices(users, weights)[0]
        resource, group = zipf_pick(rng, RESOURCES)
        verb = zipf_pick(rng, VERBS, 0.7)
        named = verb not in ("list", "watch", "create")
        namespace = rng.choice(home[user.user]) if rng.random() < 0.9 else zipf_pick(rng, NAMESPACES)
        info = RequestInfo(path="", verb=verb, is_resource=True, api_group=group, namespace=namespace,
                           resource=resource, name=f"obj-{rng.randrange(10)}" if named else "")
        return user, zipf_pick(rng, CLUSTERS), info

    stream = [request() for _ in range(args.requests)]

    cold_n = 2000
    start = time.perf_counter()
    for ident, cluster, info in stream[:cold_n]:
        authorizer.invalidate()
        authorizer.decide(ident, cluster, info)
    cold = cold_n / (time.perf_counter() - start)

    authorizer.invalidate()
    allowed = 0
    start = time.perf_counter()
    for ident, cluster, info in stream:
        allowed += authorizer.decide(ident, cluster, info).allowed
    warm = len(stream) / (time.perf_counter() - start)
    # Replaying the stream into a cache that holds all of it measures the hit path alone.
    from kubegate.gateway.authz import authorizer as authz_module
    authz_module.DECISION_CACHE = len(stream)
    for ident, cluster, info in stream:
        authorizer.decide(ident, cluster, info)
    start = time.perf_counter()
    for ident, cluster, info in stream:  # the same stream again: every decision is a cache hit
        authorizer.decide(ident, cluster, info)
    hot = len(stream) / (time.perf_counter() - start)
    distinct = len({(i.user, c, r.namespace, r.resource, r.verb) for i, c, r in stream})
    print(f"policy: {len(ps.rules)} rules, {len(ps.bindings)} bindings; 1000 users, 100 groups, "
          f"{len(NAMESPACES)} namespaces, {len(CLUSTERS)} clusters")
    print(f"cold (every decision through Casbin): {cold:,.0f} decisions/s")
    print(f"warm ({len(stream):,} requests, {distinct:,} distinct, {allowed / len(stream):.0%} allowed): "
          f"{warm:,.0f} decisions/s")
    print(f"hot (the same stream again, all cache hits): {hot:,.0f} decisions/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
