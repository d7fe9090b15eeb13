"""The hash-chained local sink: `kubegate audit verify` passes an untouched log and names the line of
every edit, deletion, insertion and swap, across rotations; moved and deleted files lose nothing."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kubegate.audit import chain
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
    lines = tail.stdout.splitlines()
    assert len(lines) == 2 and "/api/v1/namespaces/n4 " in lines[0] and "/api/v1/namespaces/n5 " in lines[1]


def _write_shared(path: str, writer: int, count: int, together: Any) -> None:
    """One of several processes appending to one shared log, in batches of 1 to 7 events."""
    sink = JsonlSink(Path(path), rotate_bytes=20_000, shared=True)
    together.wait(60)  # all start writing at once
    n = 0
    while n < count:
        size = min(1 + (n * 7 + writer) % 7, count - n)
        sink.write_batch([{**_event(n + i), "auditID": f"w{writer}-{n + i}"} for i in range(size)])
        n += size
        time.sleep(0.0005)  # a moment for the others to take the lock
    sink.close()


def test_processes_sharing_one_log_keep_one_chain_through_rotations(tmp_path: Path) -> None:
    """`serve --workers N`: every worker appends to the one log; the chain holds across all of them."""
    path = tmp_path / "audit.jsonl"
    spawn = multiprocessing.get_context("spawn")
    together = spawn.Barrier(3)
    writers = [spawn.Process(target=_write_shared, args=(str(path), w, 300, together)) for w in range(3)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
    assert [p.exitcode for p in writers] == [0, 0, 0]
    logs = files(path)
    assert len(logs) >= 5  # rotated several times, by whichever process found it due
    out = verify(*logs)
    assert out.returncode == 0, out.stdout
    ids = [json.loads(line)["auditID"] for f in logs for line in lines_of(Path(f))]
    written = [i for i in ids if i.startswith("w")]
    assert sorted(written) == sorted(f"w{w}-{n}" for w in range(3) for n in range(300))
    opened = len(ids) - len(written)
    assert opened == len(logs)  # one log-opened line per file, none from a process that merely followed
    turns = sum(1 for a, b in zip(written, written[1:]) if a.split("-")[0] != b.split("-")[0])
    assert turns > 30  # the processes did write in turns, not one after another


def test_the_chain_is_found_at_the_end_of_a_long_log(tmp_path: Path) -> None:
    """A restarted sink reads the log back from its end: lines longer than a read block included."""
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, clock=Clock())
    for n in range(50):
        sink.write({**_event(n), "requestObject": {"data": "x" * (100_000 if n % 10 == 9 else 10)}})
    sink.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert chain.last_link_of(fd, block=4096) == chain.last_link_of(fd)
        seq, _ = chain.last_link_of(fd, block=4096) or (None, "")
    finally:
        os.close(fd)
    assert seq == 50
    sink = JsonlSink(path, clock=Clock())
    sink.write(_event(50))
    sink.close()
    assert verify(str(path)).returncode == 0


def test_a_writer_that_died_before_updating_the_head_does_not_fork_the_chain(tmp_path: Path) -> None:
    """Sharing processes learn where the chain stands from FILE.head, unless the head is not the end
    of the log as it is: then from the log itself."""
    path = tmp_path / "audit.jsonl"
    first, second = JsonlSink(path, shared=True), JsonlSink(path, shared=True)
    first.write(_event(0))
    second.write(_event(1))  # picks the chain up after the first's line
    head = path.with_name(path.name + ".head")
    stale = head.read_text()
    first.write(_event(2))
    head.write_text(stale)  # as if the first had died after writing its line, before its head
    second.write(_event(3))
    first.write(_event(4))
    first.close()
    second.close()
    out = verify(str(path))
    assert out.returncode == 0, out.stdout
    assert [json.loads(line)["auditID"] for line in lines_of(path)][1:] == [f"id-{n}" for n in range(5)]
    assert chain.read_head(head.read_text())[2] == path.stat().st_size  # the head names the file's end again


def test_a_head_written_by_an_earlier_version_still_verifies(tmp_path: Path) -> None:
    path = write_log(tmp_path, 3)
    head = path.with_name(path.name + ".head")
    seq, digest, size, _ = chain.read_head(head.read_text())
    assert size == path.stat().st_size
    head.write_text(f"{seq} {digest}\n")  # place and hash only, as heads were written before
    assert verify(str(path)).returncode == 0
    head.write_text(f"{seq} {'0' * 64}\n")
    out = verify(str(path))
    assert out.returncode == 1 and "edited" in out.stdout
