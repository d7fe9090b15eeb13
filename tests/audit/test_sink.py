"""The audit log commits a batch only once it is written: a write the disk refuses is cut back off,
the chain does not move on, and the batch is written, in order and once, when space returns; a line
torn by a crash is cut off when the log is opened again; `sync` adds fdatasync per batch or per write."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from kubegate.audit import chain
from kubegate.audit.sink import JsonlSink


def _event(n: int) -> dict[str, Any]:
    return {"kind": "Event", "auditID": f"id-{n}", "stage": "ResponseComplete", "annotations": {"n": str(n)}}


def _ids(path: Path) -> list[str]:
    return [json.loads(line).get("auditID", "") for line in path.read_text().splitlines()
            if json.loads(line).get("auditID", "").startswith("id-")]


class Disk:
    """os.write that takes FREE more bytes, then refuses with ENOSPC (after a partial write, as a
    filling disk does)."""

    def __init__(self, free: int) -> None:
        self.free = free

    def write(self, real: Any) -> Any:
        def write(fd: int, data: Any) -> int:
            if self.free <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            taken = real(fd, bytes(data[:self.free]))
            self.free -= taken
            return taken
        return write


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    d = Disk(10 ** 9)
    monkeypatch.setattr(os, "write", d.write(os.write))
    yield d


def test_a_batch_the_disk_refuses_is_cut_off_and_written_once_when_space_returns(tmp_path: Path, disk: Disk) -> None:
    log = tmp_path / "audit.jsonl"
    sink = JsonlSink(log)
    sink.write_batch([_event(0), _event(1)])
    size = log.stat().st_size
    disk.free = 150  # part of the next batch fits, not all of it
    with pytest.raises(OSError):
        sink.write_batch([_event(2), _event(3), _event(4)])
    assert log.stat().st_size == size  # the part that was written is cut back off
    assert not sink.healthy()
    with pytest.raises(OSError):
        sink.write_batch([_event(5)])  # still full: kept behind the others
    disk.free = 10 ** 9
    assert sink.healthy()  # writes what waited
    sink.write_batch([_event(6)])
    sink.close()
    assert _ids(log) == [f"id-{n}" for n in range(7)]
    assert chain.verify([log]) == []


def test_a_torn_last_line_is_cut_off_when_the_log_is_opened(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    sink = JsonlSink(log)
    sink.write_batch([_event(0), _event(1)])
    sink.close()
    with open(log, "a") as f:
        f.write('{"kind":"Event","auditID":"id-torn","annot')  # a crash in the middle of a write
    again = JsonlSink(log)
    again.write_batch([_event(2)])
    again.close()
    assert _ids(log) == ["id-0", "id-1", "id-2"]
    assert chain.verify([log]) == []


@pytest.mark.parametrize(("sync", "expected"), [("none", 0), ("batch", 1), ("always", 1)])
def test_sync_adds_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: str, expected: int) -> None:
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd) or real(fd))
    sink = JsonlSink(tmp_path / "audit.jsonl", sync=sync)
    synced.clear()
    sink.write_batch([_event(0), _event(1), _event(2)])
    # a batch is one write: once for batch and always (always: every write, a write-ahead record too)
    assert len(synced) == expected
    sink.close()


def test_an_unknown_sync_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sync must be one of none, batch, always"):
        JsonlSink(tmp_path / "audit.jsonl", sync="sometimes")


def test_a_full_filesystem_refuses_and_recovers(tmp_path: Path) -> None:
    """The same on a real filesystem that fills up: a small tmpfs."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.fail("cannot mount a tmpfs here (the tests run as root on these machines)")
    sink = None
    try:
        log = mount / "audit.jsonl"
        sink = JsonlSink(log)
        filler = mount / "filler"
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * (1 << 20))
            except OSError:
                pass
        events, refused = [], 0
        for n in range(60):
            try:
                sink.write_batch([_event(n)])
            except OSError:
                refused += 1
            events.append(n)
        assert refused, "the filesystem never filled"
        filler.unlink()
        assert sink.healthy()
        sink.close()
        sink = None
        assert _ids(log) == [f"id-{n}" for n in events]
        assert chain.verify([log]) == []
    finally:
        if sink is not None:
            sink.close()
        subprocess.run(["umount", "-l", str(mount)], check=False)
