"""Drills: the gateway killed with SIGKILL in the middle of a stream of changes (one process, and
two workers), and an audit log whose filesystem fills up. No change the cluster executed is left
without its record, and the chain verifies afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess as sp
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, settled_text, start_gateway
from tests.redis_server import RedisServer


def _family(pid: int) -> list[int]:
    """PID and every process below it."""
    found = [pid]
    for child in sp.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split():
        found += _family(int(child))
    return found


def _kubegate(*args: str) -> sp.CompletedProcess[str]:
    return sp.run([sys.executable, "-m", "kubegate", *args], capture_output=True, text=True, timeout=120)


def _records(log: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(log.parent.glob(log.name + "*")):
        if path.name.endswith(".head"):
            continue
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_gateway_leaves_no_executed_change_without_its_record(
        tmp_path: Path, upstream: harness.RunningEmulator, redis_server: RedisServer, workers: int) -> None:
    emu = upstream
    namespace = f"drill-{workers}"
    kinds = {r: emu.emulator.registry.lookup("", "v1", r) for r in ("namespaces", "configmaps")}
    count = 150

    def seed() -> None:
        emu.emulator.store.create(kinds["namespaces"], "", {"metadata": {"name": namespace}})
        for n in range(count):
            emu.emulator.store.create(kinds["configmaps"], namespace, {"metadata": {"name": f"cm-{n}"}})
    emu.call(seed)
    extra: dict[str, Any] = {"store": {"redis_url": redis_server.url, "key_prefix": f"drill-{workers}:"}} \
        if workers > 1 else {}
    gw = start_gateway(tmp_path / "gw", upstream, workers=workers, **extra)
    token = gw.token("ada")
    answered = threading.Semaphore(0)

    def patch(n: int) -> int:
        try:
            r = requests.patch(f"{gw.url}/api/v1/namespaces/{namespace}/configmaps/cm-{n}", timeout=20,
                               verify=str(gw.ca_file), data=json.dumps({"metadata": {"labels": {"drilled": "yes"}}}),
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/merge-patch+json"})
            answered.release()
            return r.status_code
        except requests.RequestException:
            return 0

    assert gw.proc is not None
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(patch, n) for n in range(count)]
        for _ in range(count // 3):  # a third answered: the rest are in flight, or not sent yet
            assert answered.acquire(timeout=60)
        for pid in _family(gw.proc.pid):
            os.kill(pid, signal.SIGKILL)
        codes = [f.result() for f in futures]
    gw.stop()
    assert codes.count(200) >= count // 3 and 0 in codes  # some answered, some cut off by the kill

    executed = {o["metadata"]["name"] for o in emu.call(lambda: emu.emulator.store.list_objects(kinds["configmaps"], namespace))
                if (o["metadata"].get("labels") or {}).get("drilled") == "yes"}
    records = _records(gw.settings.audit_path)
    recorded = {(e.get("objectRef") or {}).get("name") for e in records
                if e.get("verb") == "patch" and (e.get("objectRef") or {}).get("namespace") == namespace}
    assert executed and executed <= recorded, sorted(executed - recorded)
    ahead = {(e.get("objectRef") or {}).get("name") for e in records
             if e.get("stage") == "RequestReceived" and (e.get("objectRef") or {}).get("namespace") == namespace}
    assert executed <= ahead  # each executed change was written ahead, not only answered

    # Started again on the same log: the chain goes on and verifies, the cut-off requests show.
    again = start_gateway(tmp_path / "gw", upstream, workers=workers, **extra)
    try:
        assert requests.get(f"{again.url}/api/v1/namespaces/{namespace}/configmaps", verify=str(again.ca_file),
                            headers={"Authorization": f"Bearer {token}"}, timeout=20).status_code == 200
        settled_text(again.settings.audit_path)
    finally:
        again.stop()
    files = [str(p) for p in sorted(gw.settings.audit_path.parent.glob("audit.jsonl*")) if not p.name.endswith(".head")]
    verified = _kubegate("audit", "verify", *files)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    incomplete = _kubegate("audit", "search", *files, "--incomplete", "-o", "json")
    cut_off = [json.loads(line) for line in incomplete.stdout.splitlines()]
    answered_names = {f"cm-{n}" for n, code in enumerate(codes) if code == 200}
    assert all(e["stage"] == "RequestReceived" for e in cut_off)
    assert not {e["objectRef"]["name"] for e in cut_off} & answered_names  # an answered change completed
    if cut_off:
        assert f"{len(cut_off)} request(s) written ahead without a completion" in verified.stdout


def test_a_full_audit_disk_refuses_changes_and_keeps_every_record(tmp_path: Path,
                                                                   upstream: harness.RunningEmulator) -> None:
    mount = tmp_path / "audit"
    mount.mkdir()
    if sp.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.fail("cannot mount a tmpfs here (the tests run as root on these machines)")
    gw: GatewayHandle | None = None
    try:
        gw = start_gateway(tmp_path / "gw", upstream, audit={"path": str(mount / "audit.jsonl")})
        token = gw.token("ada")
        name = "disk-full"

        def create(n: int) -> requests.Response:
            return requests.post(f"{gw.url}/api/v1/namespaces/default/configmaps", timeout=20, verify=str(gw.ca_file),
                                 headers={"Authorization": f"Bearer {token}"}, json={"metadata": {"name": f"{name}-{n}"}})

        assert create(0).status_code == 201
        filler = mount / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass
        # The log's last page may still take a few lines; then every request is refused.
        refused: dict[int, str] = {}
        for n in range(1, 60):
            r = create(n)
            if r.status_code == 503:
                refused[n] = r.headers["Audit-Id"]
                status = r.json()
                assert status["kind"] == "Status" and status["code"] == 503, status
            else:
                assert r.status_code == 201 and not refused, (n, r.status_code, r.text)  # never after a refusal
            if len(refused) == 5:
                break
        assert len(refused) == 5
        names = {o["metadata"]["name"] for o in upstream.call(
            lambda: upstream.emulator.store.list_objects(upstream.emulator.registry.lookup("", "v1", "configmaps"), "default"))}
        assert not {f"{name}-{n}" for n in refused} & names  # nothing refused was forwarded

        filler.unlink()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and create(9).status_code != 201:
            time.sleep(0.2)
        settled_text(gw.settings.audit_path)
        events = [json.loads(line) for line in gw.settings.audit_path.read_text().splitlines()]
        for audit_id in refused.values():  # each refused request's event is there, once
            completions = [e for e in events if e.get("auditID") == audit_id and e.get("stage") == "ResponseComplete"]
            assert len(completions) == 1 and completions[0]["responseStatus"]["code"] == 503, audit_id
        verified = _kubegate("audit", "verify", str(gw.settings.audit_path))
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        if gw is not None:
            gw.stop()
        sp.run(["umount", "-l", str(mount)], check=False)
