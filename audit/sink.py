"""Where audit events go. The gateway depends on the `Sink` interface only."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from . import chain

log = logging.getLogger("kubegate.audit")


class Sink(Protocol):
    def write(self, event: dict[str, Any]) -> None:
        """Persist one event or raise OSError."""

    def write_ahead(self, event: dict[str, Any]) -> None:
        """Persist one event before returning (a change's record, before the change is forwarded)
        or raise OSError."""

    def write_durable(self, event: dict[str, Any]) -> Future[None]:
        """Persist one event; the future is done once it is (a change's completion, before the
        client hears it). Raises OSError when it cannot be taken at all."""

    def healthy(self) -> bool:
        """False while events cannot be written: the gateway then serves nothing new."""

    def close(self) -> None: ...


def _cut_torn_tail(path: Path) -> None:
    """Cut off a last line a crash left without its newline (a write(2) cut short)."""
    try:
        with open(path, "rb+") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0 or os.pread(f.fileno(), 1, size - 1) == b"\n":
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                cut = os.pread(f.fileno(), step, pos - step).rfind(b"\n")
                pos -= step
                if cut >= 0:
                    pos += cut + 1
                    break
            log.warning("%s ends in a torn line (%d bytes): cut off", path, size - pos)
            os.ftruncate(f.fileno(), pos)
    except FileNotFoundError:
        return


def _now_text(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonlSink:
    """One hash-chained audit.k8s.io/v1 Event per line (see chain.py), flushed per batch (the
    gateway writes through `writer.BackgroundWriter`, which batches whatever is queued).

    - A batch is committed only once written: its lines go to the file in one `write(2)` (more only
      when the kernel takes part of it), and only then do the chain's sequence and hash move on. A
      write that fails (a full disk) is truncated back to where the file ended, and the batch stays
      pending: retried before anything newer, written in order, once, when space returns. While
      that lasts, `healthy()` is False.
    - `sync`: "none", the lines reach the file (the page cache: they survive the process, not the
      machine); "batch", also `fdatasync` once per batch; "always", `fdatasync` after every write
      (each write-ahead record too). docs/audit.md measures what each costs.
    - A line torn by a crash in the middle of a write (no final newline) is cut off when the log
      is opened again, so the chain goes on from the last whole line.
    - The file is rotated past `rotate_bytes` or `rotate_seconds` (renamed to FILE.<UTC time>),
      and only the newest `keep_files` rotated files are kept. Each new file starts with a
      `log-opened` event that links it to the one before.
    - A file moved or deleted by someone else (logrotate) is noticed at the next write and a new
      one is started; so is a `reopen()` (SIGHUP).
    - `shared=True`: several processes (`kubegate serve --workers N`) append to the one log. Each
      batch is written under an exclusive `flock` of FILE.head; before writing, a process picks the
      chain up where the others left it (from FILE.head when it names the file's end, else the last
      line of the file, read back from its end) and follows a rotation another process made. One
      chain, one file, whoever writes.
    """

    IN_PLACE_SECONDS = 0.1
    SYNC_MODES = ("none", "batch", "always")

    def __init__(self, path: Path, *, rotate_bytes: int = 0, rotate_seconds: float = 0, keep_files: int = 0,
                 clock: Callable[[], float] = time.time, shared: bool = False, sync: str = "none") -> None:
        if sync not in self.SYNC_MODES:
            raise ValueError(f"sync must be one of {', '.join(self.SYNC_MODES)}")
        self.sync = sync
        self.path, self.head = path, path.with_name(path.name + ".head")
        self.rotate_bytes, self.rotate_seconds, self.keep_files, self.clock = \
            rotate_bytes, rotate_seconds, keep_files, clock
        self.shared = shared
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._reopen_asked = False
        self._in_place_at = -self.IN_PLACE_SECONDS  # when healthy() last found the file in its place
        # Opened without truncating: other processes may hold it (and its lock) already.
        self._head = os.fdopen(os.open(self.head, os.O_RDWR | os.O_CREAT, 0o600), "r+", encoding="utf-8")
        with self._exclusive():
            _cut_torn_tail(path)
            link = chain.last_link(path) or self._last_rotated_link()
            self._seq, self._prev = (link[0] + 1, link[1]) if link else (0, chain.GENESIS)
            self._open(previous=self._newest_rotated() if not path.exists() or path.stat().st_size == 0 else None)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Across processes, when shared: one writer of the log (and its head) at a time."""
        if not self.shared:
            yield
            return
        fcntl.flock(self._head.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._head.fileno(), fcntl.LOCK_UN)

    def _follow_others(self) -> None:
        """Shared log, under the lock: pick up what other processes wrote since this one last did,
        and the file they rotated to."""
        if os.fstat(self._file.fileno()).st_size != self._size:
            self._resync()
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_ino != self._inode and current.st_size > 0:
            # Another process rotated (or re-created) the log; its first line links the chain.
            self._file.close()
            self._open(previous=None)
            self._resync()

    def _resync(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        link = self._link_from_head(size) or chain.last_link_of(self._file.fileno())
        if link is not None:
            self._seq, self._prev = link[0] + 1, link[1]
        self._size = size

    def _link_from_head(self, size: int) -> tuple[int, str] | None:
        """Where the chain stands, from FILE.head, if the head is the end of this file as it is now
        (a writer that died between its lines and its head leaves a head that is not: then the log
        itself is read back)."""
        head = os.pread(self._head.fileno(), 256, 0).decode("ascii", "replace")
        seq_text, digest, head_size, inode = chain.read_head(head)
        if head_size == size and inode == self._inode and seq_text.isdigit() and len(digest) == 64:
            return int(seq_text), digest
        return None

    # -- files ---------------------------------------------------------------------------------

    def _rotated(self) -> list[Path]:
        return sorted(self.path.parent.glob(self.path.name + ".2*"))

    def _newest_rotated(self) -> str:
        rotated = self._rotated()
        return rotated[-1].name if rotated else ""

    def _last_rotated_link(self) -> tuple[int, str] | None:
        for older in reversed(self._rotated()):
            if (link := chain.last_link(older)) is not None:
                return link
        return None

    def _open(self, previous: str | None) -> None:
        """Open the log for appending; `previous` (not None): it is new, and starts with a header."""
        self._file = open(self.path, "a+", encoding="utf-8")  # readable: a shared log is read back (_resync)
        os.chmod(self.path, 0o600)
        stat = os.fstat(self._file.fileno())
        self._inode = stat.st_ino
        # Counted here, not asked of the file: a text file's tell() flushes its buffer, which would
        # turn every event of a batch into a write of its own.
        self._size = stat.st_size
        self._opened = self.clock()
        if previous is not None:
            self._append(chain.opened_event(previous, _now_text(self._opened)))

    def _moved_away(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return True

    def _rotate_due(self) -> bool:
        size = self._size
        return size > 0 and (bool(self.rotate_bytes and size >= self.rotate_bytes) or
                             bool(self.rotate_seconds and self.clock() - self._opened >= self.rotate_seconds))

    def _start_new_file(self, previous: str) -> None:
        self._file.close()
        self._open(previous=previous)

    def _rotate(self) -> None:
        stamp = dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.{stamp}")
        self._file.close()
        os.replace(self.path, target)
        if self.keep_files:
            for old in self._rotated()[:-self.keep_files]:
                old.unlink(missing_ok=True)
        self._open(previous=target.name)

    # -- writing -------------------------------------------------------------------------------

    def _append(self, event: dict[str, Any]) -> None:
        self._write_lines([event])
        self._flush_files()

    def _write_lines(self, events: list[dict[str, Any]]) -> int:
        """Seal EVENTS onto the chain — all of them, or up to the one that brings the file to its
        rotation size — and write those, all or nothing: the chain moves on only once every byte is
        in the file; a failed write is cut back off. How many were written."""
        seq, prev, lines, start = self._seq, self._prev, [], self._size
        size = start
        for event in events:
            line, prev = chain.seal(event, seq, prev)
            lines.append(line)
            seq += 1
            size += len(line.encode("utf-8")) + 1
            if self.rotate_bytes and size >= self.rotate_bytes:
                break
        data = ("\n".join(lines) + "\n").encode("utf-8")
        fd = self._file.fileno()
        try:
            view, done = memoryview(data), 0
            while done < len(data):
                done += os.write(fd, view[done:])
            if self.sync == "always":
                os.fdatasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError as e:
                log.error("cannot cut a failed audit write back off %s: %s", self.path, e)
            raise
        self._seq, self._prev, self._size = seq, prev, start + len(data)
        return len(lines)

    def _flush_files(self) -> None:
        if self.sync == "batch":
            os.fdatasync(self._file.fileno())
        # Overwritten in place, fixed width: no open, truncate or rename per write. A head that
        # cannot be written is only stale: readers check it against the file (_link_from_head).
        try:
            self._head.seek(0)
            self._head.write(chain.head_line(self._seq - 1, self._prev, self._size, self._inode))
            self._head.flush()
        except OSError as e:
            log.warning("cannot update %s: %s", self.head, e)

    def write(self, event: dict[str, Any]) -> None:
        self.write_batch([event])

    def write_ahead(self, event: dict[str, Any]) -> None:
        self.write_batch([event])

    def write_durable(self, event: dict[str, Any]) -> Future[None]:
        self.write_batch([event])
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        """Append them (after any still pending from a failed write), flushed once."""
        with self._lock:
            self._pending.extend(events)
            self._flush()

    def _flush(self) -> None:
        with self._exclusive():
            self._flush_unlocked()

    def _flush_unlocked(self) -> None:
        try:
            if self.shared:
                self._follow_others()
            if self._reopen_asked and self.shared and not self._moved_away():
                self._reopen_asked = False  # still the file the others write: nothing to start
            if self._reopen_asked or self._moved_away():
                self._reopen_asked = False
                self._start_new_file(previous="(moved away: see rotated files)")
            elif self._rotate_due():
                self._rotate()
            while self._pending:
                if self._rotate_due():
                    self._rotate()
                del self._pending[:self._write_lines(self._pending)]  # committed: written whole
                if not self._pending or self._rotate_due():
                    self._flush_files()
        except OSError:
            log.error("cannot write audit events to %s (%d pending)", self.path, len(self._pending))
            raise

    def reopen(self) -> None:
        """Start a new file at the next write (SIGHUP, after an outside rotation)."""
        with self._lock:
            self._reopen_asked = True

    def healthy(self) -> bool:
        # Asked on every request: the common answer without the writer's lock, which a batch holds
        # while it writes to disk (nothing waiting to be written, the file still where it was). The
        # file's place is looked at most every IN_PLACE_SECONDS (a stat per request was 0.5% of
        # the CPU); the writer looks at every batch anyway, so no event misses a moved file.
        if not self._pending and time.monotonic() - self._in_place_at < self.IN_PLACE_SECONDS:
            return True
        if not self._pending and not self._moved_away():
            self._in_place_at = time.monotonic()
            return True
        with self._lock:
            try:
                if self._moved_away() and not self._pending:
                    self._flush()  # a deleted or moved file: a new one now, so readiness tells the truth
                if not self._pending:
                    return True
                self._flush()
            except OSError:
                return False
            return True

    def close(self) -> None:
        with self._lock:
            self._file.close()
            self._head.close()
