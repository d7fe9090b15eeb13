"""The hash-chained local sink: `kubegate audit verify` passes an untouched log and names the line of
every edit, deletion, insertion and swap, across rotations; moved and deleted files lose nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubegate.audit.sink import JsonlSink


def _event(n: int) -> dict[str, object]:
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": f"id-{n}",
            "stage": "ResponseComplete", "verb": "get", "requestURI": f"/api/v1/namespaces/n{n}",
            "user": {"username": "alice"}, "annotations": {"n": str(n)}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def write_log(tmp_path: Path, count: int, **kwargs: int) -> Path:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, clock=Clock(), **kwargs)  # type: ignore[arg-type]
    for n in range(count):
        sink.write(_event(n))
    sink.close()
    return path


def files(path: Path) -> list[str]:
    return [str(p) for p in sorted(path.parent.glob(path.name + ".2*"))] + [str(path)]


def verify(*paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", "audit", "verify", *paths],
                          capture_output=True, text=True, timeout=60)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    path = write_log(tmp_path, 10)
    out = verify(str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: 11 events in 1 file(s)" in out.stdout  # the log-opened line and ten events


@pytest.mark.parametrize(("tamper", "names"), [
    pytest.param(lambda ls: ls[:4] + [ls[4].replace('"alice"', '"mallory"')] + ls[5:], ":5: edited", id="edit"),
    pytest.param(lambda ls: ls[:4] + ls[5:], "at place 4 before it were deleted", id="delete"),
    pytest.param(lambda ls: ls[:4] + [json.dumps(_event(99))] + ls[4:], ":5: not a chained audit event",
                 id="insert-foreign"),
    pytest.param(lambda ls: ls[:4] + [ls[2]] + ls[4:], ":5: repeats the place (2)", id="insert-copy"),
    pytest.param(lambda ls: ls[:4] + [ls[5], ls[4]] + ls[6:], ":6: out of order", id="swap"),
    pytest.param(lambda ls: ls[:-1] + [ls[-1].replace('"alice"', '"bob"')], ":11: edited", id="edit-last-line"),
    pytest.param(lambda ls: ls[:-1], "ends at place 9", id="delete-last-line"),
])
def test_each_kind_of_tampering_is_named(tmp_path: Path, tamper: object, names: str) -> None:
    path = write_log(tmp_path, 10)
    path.write_text("\n".join(tamper(lines_of(path))) + "\n")  # type: ignore[operator]
    out = verify(str(path))
    assert out.returncode == 1
    assert names in out.stdout, out.stdout


def test_the_chain_runs_across_rotated_files(tmp_path: Path) -> None:
    path = write_log(tmp_path, 40, rotate_bytes=2000, keep_files=0)
    logs = files(path)
    assert len(logs) >= 3
    assert verify(*logs).returncode == 0
    # A whole rotated file removed: the gap is named where the chain resumes.
    out = verify(logs[0], *logs[2:])
    assert out.returncode == 1 and "were deleted" in out.stdout
    # One line edited in a middle file.
    middle = Path(logs[1])
    ls = lines_of(middle)
    middle.write_text("\n".join(ls[:2] + [ls[2].replace("alice", "eve")] + ls[3:]) + "\n")
    out = verify(*logs)
    assert out.returncode == 1 and f"{middle}:3: edited" in out.stdout


def test_a_log_moved_away_or_deleted_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, clock=Clock())
    for n in range(3):
        sink.write(_event(n))
    moved = tmp_path / "audit.jsonl.20260101T000000.000000Z"  # what logrotate's rename does
    os.rename(path, moved)
    sink.write(_event(3))  # noticed at once: a new file, linked to the chain
    assert [json.loads(line)["auditID"] for line in lines_of(path)][1:] == ["id-3"]
    assert verify(str(moved), str(path)).returncode == 0
    for n in range(4, 6):
        sink.write(_event(n))
    path.unlink()  # deleted outright
    assert sink.healthy()  # readiness notices too: a new file is there again
    sink.write(_event(6))
    sink.close()
    recorded = [json.loads(line)["auditID"] for f in (moved, path) for line in lines_of(f)]
    assert [a for a in recorded if a.startswith("id-")] == ["id-0", "id-1", "id-2", "id-6"]
    # The deleted file's events are gone from disk, and verify says so, naming where the chain resumes.
    out = verify(str(moved), str(path))
    assert out.returncode == 1 and "were deleted" in out.stdout


def test_a_restarted_sink_continues_the_chain(tmp_path: Path) -> None:
    path = write_log(tmp_path, 3)
    sink = JsonlSink(path, clock=Clock())
    sink.write(_event(3))
    sink.close()
    assert verify(str(path)).returncode == 0


def test_search_and_tail_find_what_on_call_asks_for(tmp_path: Path) -> None:
    path = write_log(tmp_path, 6)
    out = subprocess.run([sys.executable, "-m", "kubegate", "audit", "search", str(path), "--user", "alice",
                          "-o", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 6
    none = subprocess.run([sys.executable, "-m", "kubegate", "audit", "search", str(path), "--user", "bob"],
                          capture_output=True, text=True, timeout=60)
    assert none.stdout == "" and "0 event(s)" in none.stderr
    tail = subprocess.run([sys.executable, "-m", "kubegate", "audit", "tail", str(path), "-n", "2"],
                          capture_output=True, text=True, timeout=60)
    assert [ln.split()[-1] for ln in tail.stdout.splitlines()] == ["/api/v1/namespaces/n4", "/api/v1/namespaces/n5"]
