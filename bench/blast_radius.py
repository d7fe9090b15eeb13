"""What a change's blast radius costs: reads made to the cluster and wall time per held request, as a
ratio to the request alone.

    .venv/bin/python bench/blast_radius.py [--rounds 20] [--pods 30]

One emulated cluster (workloads own ReplicaSets and pods) in this process's thread; the blast
radius is assessed as the gateway does (`consequences.assess`, through the gateway's own client,
impersonating the requester) for three changes of a namespace holding a Deployment of --pods
replicas behind a Service and a PodDisruptionBudget: its delete (the cascade, the pods' budget and
Service), a scale-down to 1, and the namespace's delete (discovery, then every resource in it).
"The request alone" is one GET of the object through the same client: what the change itself
costs the cluster to answer, give or take. Rows: median ms over --rounds, reads, objects listed,
and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from kubegate.emulator import harness
from kubegate.gateway.clusters.client import UpstreamClient
from kubegate.gateway.clusters.upstreams import Upstream
from kubegate.gateway.consequences.assess import Change, assess
from kubegate.gateway.consequences.reader import ClusterReader
from kubegate.gateway.identity.identity import Identity
from kubegate.gateway.request.info import RequestInfo


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pods", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        emu = harness.start(Path(tmp) / "emu", controllers=True)
        try:
            return asyncio.run(_run(emu, args.rounds, args.pods))
        finally:
            emu.stop()


async def _run(emu: harness.RunningEmulator, rounds: int, pods: int) -> int:
    ns = "shop"
    apps = "/apis/apps/v1/namespaces/shop/deployments"
    setup = [("/api/v1/namespaces", {"metadata": {"name": ns}}),
             (apps, {"metadata": {"name": "web"}, "spec": {
                 "replicas": pods, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "w", "image": "web:1"}]}}}}),
             ("/api/v1/namespaces/shop/services", {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}),
             ("/apis/policy/v1/namespaces/shop/poddisruptionbudgets",
              {"metadata": {"name": "web"}, "spec": {"minAvailable": pods // 2, "selector": {"matchLabels": {"app": "web"}}}})]
    client = UpstreamClient()
    upstream = Upstream("emu", "127.0.0.1", emu.port, "", "127.0.0.1", emu.ca_file, token=emu.admin_token)
    admin = Identity("bench", ("system:masters",))
    for path, body in setup:
        await client.create(upstream, admin, path, body, "bench")
    deploy = f"{apps}/web"
    changes = {
        "Deployment delete (cascade, budget, Service)": (Change(RequestInfo(
            deploy, "delete", True, "apps", "v1", ns, "deployments", "", "web")), deploy),
        "scale-down to 1": (Change(RequestInfo(deploy + "/scale", "patch", True, "apps", "v1", ns, "deployments",
                                               "scale", "web"), new={"spec": {"replicas": 1}}), deploy),
        "namespace delete (discovery, everything in it)": (Change(RequestInfo(
            "/api/v1/namespaces/shop", "delete", True, "", "v1", "", "namespaces", "", "shop")),
            "/api/v1/namespaces/shop"),
    }
    print(f"blast radius per held request, {pods} pods, median of {rounds} (ms; ratio to the request alone)")
    print(f"{'change':48} {'alone':>8} {'radius':>8} {'ratio':>7} {'reads':>6} {'objects':>8}")
    for name, (change, path) in changes.items():
        alone, radius_ms, reads, objects = [], [], 0, 0
        for _ in range(rounds):
            started = time.perf_counter()
            await client.get_object(upstream, admin, path, "bench")
            alone.append((time.perf_counter() - started) * 1000)
            reader = ClusterReader(client, upstream, admin, "bench")
            started = time.perf_counter()
            radius = await assess(change, reader)
            radius_ms.append((time.perf_counter() - started) * 1000)
            reads, objects = radius.reads, radius.objects_read
            assert radius.complete, radius.incomplete
        a, r = statistics.median(alone), statistics.median(radius_ms)
        print(f"{name:48} {a:8.2f} {r:8.2f} {r / a:6.1f}x {reads:6d} {objects:8d}")
    await client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
