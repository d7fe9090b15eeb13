"""Audit writes off the event loop: events are queued in memory and written in batches by a thread.

Writing an event at once, on the gateway's event loop, cost every request a JSON dump, a SHA-256,
two `write`s and two `flush`es (about 30 µs, more on a slow disk, and any disk stall stopped every
connection). Here the request path only appends to a list; a writer thread takes whatever is
queued, hands it to the sink as one batch (one flush per batch), and reports how long it took.

The rule that a request is not served while its audit cannot be written still holds, one step
later: a batch that fails stays queued and is retried, `healthy()` is False meanwhile (so the
Ingress stage refuses new requests), and it is also False while more than `max_pending` events wait
(the disk is slower than the traffic). What the queue holds when the process is killed is lost,
as with the apiserver's own buffered backends; `close()` (graceful stop) writes it out first. That
is why a change does not wait in this queue: its RequestReceived record is written ahead
(`write_ahead`), through to the file, before the change is forwarded; and its completion is queued
with a future (`write_durable`) that the caller awaits before it answers, so an answered change
always has its outcome on record, batched with whatever else is queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable, Protocol

log = logging.getLogger("kubegate.audit")


class BatchSink(Protocol):
    def write_batch(self, events: list[dict[str, Any]]) -> None:
        """Persist all of them, in order, or raise OSError having persisted none or a prefix."""

    def healthy(self) -> bool: ...

    def close(self) -> None: ...


class BackgroundWriter:
    def __init__(self, sink: BatchSink, *, max_pending: int = 50_000, retry_seconds: float = 0.2,
                 on_written: Callable[[list[dict[str, Any]], float], None] | None = None,
                 on_failure: Callable[[int], None] | None = None,
                 on_depth: Callable[[int], None] | None = None) -> None:
        self.sink, self.max_pending, self.retry_seconds = sink, max_pending, retry_seconds
        self.on_written = on_written or (lambda events, seconds: None)
        self.on_failure = on_failure or (lambda pending: None)
        self.on_depth = on_depth or (lambda depth: None)
        self._queue: deque[dict[str, Any]] = deque()
        # Futures of durable writes queued, and of those in a batch that failed (the sink keeps the
        # unwritten events; they are resolved after the next batch the sink writes).
        self._waiters: list[Future[None]] = []
        self._unresolved: list[Future[None]] = []
        self._cond = threading.Condition()
        self._failing = False
        self._writing = 0
        self._stopping = False
        self._give_up = float("inf")
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    # -- the request side ------------------------------------------------------------------------

    def write(self, event: dict[str, Any]) -> None:
        with self._cond:
            if self._stopping:
                raise OSError("the audit writer is stopped")
            self._queue.append(event)
            self._cond.notify()

    def write_durable(self, event: dict[str, Any]) -> Future[None]:
        """Queue EVENT like `write`; the future is done once it is written through to the sink."""
        done: Future[None] = Future()
        with self._cond:
            if self._stopping:
                raise OSError("the audit writer is stopped")
            self._queue.append(event)
            self._waiters.append(done)
            self._cond.notify()
        return done

    def write_ahead(self, event: dict[str, Any]) -> None:
        """Write EVENT now, through to the sink (and its file), before the caller goes on: the
        record of a change that must exist before the change is forwarded. Raises OSError when it
        cannot be written (the caller refuses the change). Not on the event loop: it may wait for
        a batch being written, and for fdatasync."""
        with self._cond:
            if self._stopping:
                raise OSError("the audit writer is stopped")
        self.sink.write_batch([event])

    def healthy(self) -> bool:
        with self._cond:
            if self._failing or len(self._queue) > self.max_pending:
                return False
        return self.sink.healthy()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._writing

    def __getattr__(self, name: str) -> Any:
        # accepts_mutations, reopen, …: whatever else the sink offers
        return getattr(self.sink, name)

    # -- the writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping and not self._failing:
                    self._cond.wait()
                if not self._queue and self._stopping and not self._failing:
                    return
                batch = list(self._queue)
                self._queue.clear()
                waiters, self._waiters = self._unresolved + self._waiters, []
                self._unresolved = []
                self._writing = len(batch)
            started = time.perf_counter()
            try:
                self.sink.write_batch(batch)
            except Exception as e:  # OSError: a full or gone disk; anything else: a bug, which must
                # not end this thread (every later event would be queued for nobody): both keep the
                # batch, mark the writer unhealthy (new requests refused) and retry.
                if not isinstance(e, OSError):
                    log.exception("writing a batch of %d audit events failed", len(batch))
                with self._cond:
                    # The sink wrote none or a prefix and keeps what it did not write; nothing is
                    # queued twice because the sink owns the unwritten rest now.
                    self._failing, self._writing = True, 0
                    self._unresolved = waiters + self._unresolved
                self.on_failure(len(batch))
                log.error("audit events cannot be written (%s); new requests are refused until they are", e)
                time.sleep(self.retry_seconds)
                with self._cond:
                    if self._stopping and time.monotonic() > self._give_up:
                        log.error("stopping with audit events unwritten")
                        return
                continue  # an empty batch next time still retries what the sink kept
            seconds = time.perf_counter() - started
            with self._cond:
                self._failing, self._writing = False, 0
                depth = len(self._queue)
            for waiter in waiters:
                try:
                    waiter.set_result(None)
                except InvalidStateError:
                    pass  # its caller stopped waiting
            self.on_written(batch, seconds)
            self.on_depth(depth)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written; False if that took longer than timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue and not self._writing and not self._failing:
                    return True
            time.sleep(0.002)
        return False

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._give_up = time.monotonic() + 5.0
            self._cond.notify()
        self._thread.join(timeout=10)
        self.sink.close()
