"""Where audit events go. The gateway depends on the `Sink` interface only."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("kubegate.audit")


class Sink(Protocol):
    def write(self, event: dict[str, Any]) -> None:
        """Persist one event or raise OSError."""

    def healthy(self) -> bool:
        """False while events cannot be written: the gateway then serves nothing new."""

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line, appended and flushed per event.

    An event that cannot be written is kept and retried before the next one, so a full disk
    delays records instead of losing them; while that lasts, `healthy()` is False.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._file = open(path, "a", encoding="utf-8")
        os.chmod(path, 0o600)

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock:
            self._pending.append(line)
            self._flush()

    def _flush(self) -> None:
        try:
            self._file.write("".join(self._pending))
            self._file.flush()
        except OSError:
            log.error("cannot write audit events to %s (%d pending)", self.path, len(self._pending))
            raise
        self._pending.clear()

    def healthy(self) -> bool:
        with self._lock:
            if not self._pending:
                return True
            try:
                self._flush()
            except OSError:
                return False
            return True

    def close(self) -> None:
        with self._lock:
            self._file.close()
