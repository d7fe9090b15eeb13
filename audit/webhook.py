"""Shipping audit events to an audit center, in kube-apiserver's webhook backend format, losing none.

Every event is handed to a sender thread, which appends it to a spool on disk (segment files of
JSON lines, fsync'd a batch at a time, off the event loop) and posts them, oldest first, as `audit.k8s.io/v1` EventLists (batches by
count and time) over HTTPS with the center's own CA, and records how far it got in a cursor file
only after the center accepted a batch. So the network is never on the request path; while the
center is away events wait on disk and go out in order once it is back — also after a gateway
restart; a batch is retried (with backoff) until accepted, and never sent twice once it was.

The spool is bounded (`max_spool_bytes`): past 80% an alarm is logged (and the depth is a metric);
when full, `accepts_mutations()` is False and the gateway refuses changes (reads go on and are
still spooled: their events are small) rather than make changes it could not account for.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

log = logging.getLogger("kubegate.audit.webhook")

SEGMENT_BYTES = 4 * 1024 * 1024
MAX_BACKOFF_SECONDS = 5.0  # a down center is asked again at least this often


@dataclass(frozen=True)
class Target:
    url: str
    ca_file: str = ""
    timeout_seconds: float = 5.0


class Spool:
    """Append-only segments with a persisted read cursor: a durable FIFO of event lines."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.cursor_file = directory / "cursor"
        segments = self.segments()
        self._write_seq = int(segments[-1].stem) if segments else 1
        self._out = open(self._segment(self._write_seq), "a", encoding="utf-8")

    def _segment(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}.jsonl"

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("*.jsonl"))

    def append(self, lines: list[str]) -> None:
        if self._out.tell() >= SEGMENT_BYTES:
            self._out.close()
            self._write_seq += 1
            self._out = open(self._segment(self._write_seq), "a", encoding="utf-8")
        self._out.write("".join(line + "\n" for line in lines))
        self._out.flush()
        os.fsync(self._out.fileno())

    def cursor(self) -> tuple[int, int]:
        """(segment number, byte offset) of the first line not yet delivered."""
        try:
            seg, off = self.cursor_file.read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            first = self.segments()
            return (int(first[0].stem) if first else self._write_seq), 0

    def read(self, limit: int) -> tuple[list[str], tuple[int, int]]:
        """Up to `limit` undelivered lines, and the cursor after them."""
        seg, off = self.cursor()
        lines: list[str] = []
        while len(lines) < limit:
            path = self._segment(seg)
            if not path.exists():
                break
            with open(path, encoding="utf-8") as f:
                f.seek(off)
                while len(lines) < limit:
                    line = f.readline()
                    if not line.endswith("\n"):  # end of what is written so far
                        break
                    lines.append(line.rstrip("\n"))
                    off = f.tell()
            if len(lines) < limit and seg < self._write_seq:
                seg, off = seg + 1, 0
            else:
                break
        return lines, (seg, off)

    def commit(self, cursor: tuple[int, int]) -> None:
        tmp = self.cursor_file.with_suffix(".tmp")
        tmp.write_text(f"{cursor[0]} {cursor[1]}\n")
        os.replace(tmp, self.cursor_file)
        for path in self.segments():
            if int(path.stem) < cursor[0]:
                path.unlink(missing_ok=True)

    def depth_bytes(self) -> int:
        seg, off = self.cursor()
        total = 0
        for path in self.segments():
            n = int(path.stem)
            if n >= seg:
                total += path.stat().st_size - (off if n == seg else 0)
        return total

    def close(self) -> None:
        self._out.close()


class WebhookSink:
    def __init__(self, target: Target, spool_dir: Path, *, max_spool_bytes: int = 1024 * 1024 * 1024,
                 batch_events: int = 400, batch_seconds: float = 1.0,
                 on_depth: Callable[[int], None] | None = None) -> None:
        self.target, self.max_spool_bytes = target, max_spool_bytes
        self.batch_events, self.batch_seconds = batch_events, batch_seconds
        self.spool = Spool(spool_dir)
        self.on_depth = on_depth or (lambda depth: None)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._depth = self.spool.depth_bytes()
        self._queue: list[str] = []
        self._alarmed = False
        self.delivered = 0
        self._ssl = ssl.create_default_context(cafile=target.ca_file or None)
        self._thread = threading.Thread(target=self._run, name="audit-webhook", daemon=True)
        self._thread.start()

    # -- the request side: append only ---------------------------------------------------------

    def write(self, event: dict[str, Any]) -> None:
        self.write_batch([event])

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        lines = [json.dumps(event, separators=(",", ":"), sort_keys=True) for event in events]
        with self._lock:
            self._queue.extend(lines)  # to disk by the sender thread: no fsync on the request path
            self._depth += sum(len(line) + 1 for line in lines)
            self._check_depth()
        self._wake.set()

    def _to_spool(self) -> None:
        with self._lock:
            lines, self._queue = self._queue, []
        if lines:
            self.spool.append(lines)

    def _check_depth(self) -> None:
        self.on_depth(self._depth)
        if self._depth >= 0.8 * self.max_spool_bytes and not self._alarmed:
            self._alarmed = True
            log.error("the audit spool for %s is %d%% full (%d bytes): the audit center is not taking events; "
                      "at 100%% changes are refused", self.target.url, 100 * self._depth // self.max_spool_bytes,
                      self._depth)
        elif self._depth < 0.5 * self.max_spool_bytes:
            self._alarmed = False

    def healthy(self) -> bool:
        return True  # the spool is on disk; a full one refuses changes (accepts_mutations), not reads

    def accepts_mutations(self) -> bool:
        return self._depth < self.max_spool_bytes

    # -- the sender ----------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            self._to_spool()
            lines, cursor = self.spool.read(self.batch_events)
            if not lines:
                self._wake.wait(self.batch_seconds)
                self._wake.clear()
                continue
            if len(lines) < self.batch_events and not self._stop.is_set():
                # A short batch waits a moment for more, unless the spool is being drained.
                self._wake.wait(min(self.batch_seconds, 0.2))
                self._wake.clear()
                self._to_spool()
                lines, cursor = self.spool.read(self.batch_events)
            try:
                self._post(lines)
            except (OSError, http.client.HTTPException, ValueError) as e:
                log.warning("audit center %s did not take %d events (%s); retrying in %.1fs",
                            self.target.url, len(lines), e, backoff)
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
                continue
            backoff = 0.5
            with self._lock:
                self.spool.commit(cursor)
                self._depth = max(0, self._depth - sum(len(line) + 1 for line in lines))
                self._check_depth()
            self.delivered += len(lines)

    def _post(self, lines: list[str]) -> None:
        body = ('{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
                + ",".join(lines) + "]}").encode()
        parts = urlsplit(self.target.url)
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, context=self._ssl,
                                           timeout=self.target.timeout_seconds)
        try:
            conn.request("POST", parts.path or "/", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if not 200 <= resp.status < 300:
                raise ValueError(f"HTTP {resp.status}")
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        self._to_spool()  # what was handed over but not yet on disk: kept for the next start
        self.spool.close()


class TeeSink:
    """Every event to each sink; healthy while all are."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def write(self, event: dict[str, Any]) -> None:
        self.write_batch([event])

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        # The center's copy first: it only queues, so a failing local file cannot make it see an
        # event twice when the batch is retried.
        for sink in reversed(self.sinks):
            sink.write_batch(events)

    def healthy(self) -> bool:
        return all(sink.healthy() for sink in self.sinks)

    def accepts_mutations(self) -> bool:
        return all(getattr(sink, "accepts_mutations", lambda: True)() for sink in self.sinks)

    def reopen(self) -> None:
        for sink in self.sinks:
            getattr(sink, "reopen", lambda: None)()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
