"""Audit writes leave the event loop: batched by a writer thread, retried until written, and the
gateway refuses new requests while its events cannot be written."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kubegate.audit import chain
from kubegate.audit.sink import JsonlSink
from kubegate.audit.writer import BackgroundWriter
from kubegate.emulator import harness
from tests.conftest import settled_text, start_gateway
from tests.gateway.conftest import Response, send


class FlakySink:
    """Refuses the first `failures` batches (keeping them, as JsonlSink does), then writes."""

    def __init__(self, failures: int) -> None:
        self.failures, self.kept, self.written, self.batches = failures, [], [], 0
        self.gate = threading.Event()
        self.gate.set()

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        self.gate.wait(5)
        self.kept.extend(events)
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.written.extend(self.kept)
        self.kept.clear()
        self.batches += 1

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        pass


def test_events_queued_while_the_writer_is_busy_go_in_one_batch() -> None:
    sink = FlakySink(0)
    writer = BackgroundWriter(sink)
    sink.gate.clear()
    writer.write({"n": 0})
    for n in range(1, 50):
        writer.write({"n": n})
    sink.gate.set()
    assert writer.flush()
    assert [e["n"] for e in sink.written] == list(range(50))
    assert sink.batches <= 3  # the first event alone, the 49 queued behind it together
    writer.close()


def test_a_failing_sink_makes_the_writer_unhealthy_until_everything_is_written() -> None:
    sink = FlakySink(3)
    failures: list[int] = []
    writer = BackgroundWriter(sink, retry_seconds=0.05, on_failure=failures.append)
    sink.gate.clear()
    writer.write({"n": 0})
    writer.write({"n": 1})
    sink.gate.set()
    writer.flush(timeout=0.01)
    assert not writer.healthy()
    assert writer.flush()  # retried, without new events to carry it
    assert writer.healthy()
    writer.write({"n": 2})
    assert writer.flush()
    assert [e["n"] for e in sink.written] == [0, 1, 2]  # nothing lost, nothing twice
    assert len(failures) == 3
    writer.close()


def test_a_durable_write_is_done_only_once_its_event_is_written() -> None:
    sink = FlakySink(2)
    writer = BackgroundWriter(sink, retry_seconds=0.05)
    sink.gate.clear()
    plain_first = writer.write({"n": 0})
    done = writer.write_durable({"n": 1})
    assert plain_first is None and not done.done()
    sink.gate.set()
    done.result(timeout=5)  # two failed batches later, written
    assert [e["n"] for e in sink.written] == [0, 1]
    assert sink.batches == 1
    writer.close()


class BrokenSink(FlakySink):
    """Fails every batch (keeping it) until `fixed` is set; with `bug`, as a bug would (not an OSError)."""

    def __init__(self, bug: bool = False) -> None:
        super().__init__(0)
        self.bug, self.fixed = bug, threading.Event()

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        self.kept.extend(events)
        if not self.fixed.is_set():
            raise ValueError("a bug in the sink") if self.bug else OSError("disk full")
        self.written.extend(self.kept)
        self.kept.clear()
        self.batches += 1


def eventually(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_a_durable_write_queued_behind_a_failing_batch_waits_for_it() -> None:
    sink = BrokenSink()
    writer = BackgroundWriter(sink, retry_seconds=0.02)
    first = writer.write_durable({"n": 0})
    assert eventually(lambda: not writer.healthy())  # its batch failed, and is kept
    second = writer.write_durable({"n": 1})
    assert eventually(lambda: sink.kept == [{"n": 0}, {"n": 1}])  # retried, failed again, with the second
    assert not first.done() and not second.done()
    sink.fixed.set()
    first.result(timeout=5)
    second.result(timeout=5)
    assert [e["n"] for e in sink.written] == [0, 1]
    writer.close()


@pytest.mark.parametrize("bug", [False, True], ids=["disk-full", "bug"])
def test_a_failing_sink_never_ends_the_writer_it_refuses_until_written(bug: bool) -> None:
    # A bug (not an OSError) once ended the writer thread: every later event was queued for nobody
    # while the gateway said it was ready.
    sink = BrokenSink(bug=bug)
    writer = BackgroundWriter(sink, retry_seconds=0.02)
    done = writer.write_durable({"n": 0})
    assert eventually(lambda: not writer.healthy())  # the gateway refuses new requests meanwhile
    assert eventually(lambda: len(sink.kept) == 1 and sink.batches == 0)
    assert not done.done()
    sink.fixed.set()
    done.result(timeout=5)
    assert writer.healthy()
    writer.write({"n": 1})
    assert writer.flush()
    assert [e["n"] for e in sink.written] == [0, 1]  # the thread lives on: later events are written
    writer.close()


def test_a_value_json_has_no_type_for_is_written_as_text_and_the_chain_verifies(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "audit.jsonl")
    sink.write_batch([{"auditID": "odd", "annotations": {"kubegate.io/x": b"raw"}}])
    sink.close()
    written = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert written[-1]["annotations"]["kubegate.io/x"] == "b'raw'"
    assert not chain.verify([tmp_path / "audit.jsonl"])


def test_too_many_waiting_events_are_unhealthy() -> None:
    sink = FlakySink(0)
    writer = BackgroundWriter(sink, max_pending=10)
    sink.gate.clear()
    writer.write({"n": -1})  # the writer takes this one and blocks
    for n in range(11):
        writer.write({"n": n})
    assert not writer.healthy()
    sink.gate.set()
    assert writer.flush()
    assert writer.healthy()
    writer.close()


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    writer = BackgroundWriter(JsonlSink(tmp_path / "audit.jsonl"))
    for n in range(200):
        writer.write({"auditID": str(n)})
    writer.close()
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [e["auditID"] for e in lines if "auditID" in e][-200:] == [str(n) for n in range(200)]
    assert not chain.verify([tmp_path / "audit.jsonl"])


def test_a_batch_crossing_the_rotation_size_is_split_across_files(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "audit.jsonl", rotate_bytes=2000)
    sink.write_batch([{"auditID": str(n), "pad": "x" * 100} for n in range(60)])
    sink.close()
    files = sorted(tmp_path.glob("audit.jsonl.2*")) + [tmp_path / "audit.jsonl"]
    assert len(files) > 2
    assert all(f.stat().st_size < 2000 + 400 for f in files)
    assert not chain.verify(files)


def test_the_gateway_serves_nothing_while_its_audit_cannot_be_written_and_loses_nothing(tmp_path: Path) -> None:
    upstream = harness.start(tmp_path / "emulator")
    gw = start_gateway(tmp_path / "gateway", upstream)
    try:
        auth = {"Authorization": f"Bearer {gw.token('alice')}"}

        def get(path: str) -> Response:
            return send(gw.port, gw.ca_file, "GET", path, headers=auth)

        assert get("/api/v1/namespaces/default/pods").status == 200
        log = gw.settings.audit_path
        settled_text(log)
        log.rename(log.with_name("audit.jsonl.moved"))
        log.mkdir()  # the writer cannot open a new log here: its writes fail
        resp = get("/api/v1/namespaces/default/secrets")
        assert resp.status == 503
        assert resp.json()["kind"] == "Status" and "audit" in resp.json()["message"]
        ready = send(gw.port, gw.ca_file, "GET", "/readyz?verbose")
        assert ready.status == 503 and b"audit" in ready.body
        shutil.rmtree(log)
        for _ in range(100):
            if send(gw.port, gw.ca_file, "GET", "/readyz").status == 200:
                break
            time.sleep(0.05)
        assert get("/api/v1/namespaces/default/services").status == 200
        completed = [(e["requestURI"].rsplit("/", 1)[-1], e["responseStatus"]["code"])
                     for e in gw.audit_events() if e["stage"] == "ResponseComplete"
                     and e["requestURI"].startswith("/api/")]
        # The refusal's own event waited for the log and was written once, before the next request's.
        assert completed[-2:] == [("secrets", 503), ("services", 200)]
        assert completed.count(("secrets", 503)) == 1
        assert not chain.verify([log.with_name("audit.jsonl.moved"), log])
    finally:
        gw.stop()
        upstream.stop()
