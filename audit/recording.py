"""Recording exec and attach sessions as asciicast v2 files: every keystroke in, every byte out.

kubectl's exec/attach over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`, and their
`base64.` forms) frames each message with a channel: 0 stdin, 1 stdout, 2 stderr, 3 the error
Status, 4 a terminal resize (`{"Width":…,"Height":…}`). A recording is the asciicast v2 form of
that stream, with timing: a header line, then `[seconds, "i", text]` for what was typed,
`[seconds, "o", text]` for what came back, `[seconds, "r", "WxH"]` for resizes and
`[seconds, "m", text]` for the final Status. What is typed is recorded — passwords typed into a
shell too; treat recordings as the secrets they may hold.

The file's SHA-256 goes into the session's ResponseComplete audit event, so the hash-chained
audit log vouches for the recording (`kubegate audit play --verify-with LOG`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4


class Recording:
    def __init__(self, path: Path, *, title: str, subprotocol: str, clock: Callable[[], float] = time.time,
                 env: dict[str, str] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.clock = path, clock
        self.base64 = subprotocol.startswith("base64.")
        self.started = clock()
        self._file = open(path, "w", encoding="utf-8")
        os.chmod(path, 0o600)
        header = {"version": 2, "width": 80, "height": 24, "timestamp": int(self.started), "title": title,
                  "env": env or {}}
        self._write(header)

    def _write(self, item: Any) -> None:
        self._file.write(json.dumps(item, ensure_ascii=False) + "\n")
        self._file.flush()

    def frame(self, data: bytes, from_client: bool) -> None:
        """One WebSocket message of the session."""
        if not data:
            return
        if self.base64:
            channel, payload = data[0] - ord("0"), base64.b64decode(data[1:] or b"", validate=False)
        else:
            channel, payload = data[0], data[1:]
        if not payload:
            return
        at = round(self.clock() - self.started, 6)
        text = payload.decode("utf-8", errors="replace")
        if from_client and channel == STDIN:
            self._write([at, "i", text])
        elif from_client and channel == RESIZE:
            try:
                size = json.loads(payload)
                self._write([at, "r", f"{int(size['Width'])}x{int(size['Height'])}"])
            except (ValueError, KeyError, TypeError):
                self._write([at, "m", f"unreadable resize: {text[:200]}"])
        elif not from_client and channel in (STDOUT, STDERR):
            self._write([at, "o", text])
        elif not from_client and channel == ERROR:
            self._write([at, "m", text])

    def close(self) -> str:
        """Close the file; its SHA-256."""
        if not self._file.closed:
            self._file.close()
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def play(path: Path, write: Callable[[str], Any], *, speed: float = 1.0, max_idle: float = 2.0,
         sleep: Callable[[float], Any] = time.sleep) -> int:
    """Replay a recording's output with its timing (pauses capped at max_idle; speed 0: none); the
    number of events."""
    lines = path.read_text(encoding="utf-8").splitlines()
    last, count = 0.0, 0
    for text in lines[1:]:
        at, kind, data = json.loads(text)
        if speed > 0:
            sleep(min(max_idle, max(0.0, at - last)) / speed)
        last = at
        if kind == "o":
            write(data)
        count += 1
    return count
