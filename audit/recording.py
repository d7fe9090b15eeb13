"""Recording exec and attach sessions as asciicast v2 files: every keystroke in, every byte out.

kubectl's exec/attach over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`, and their
`base64.` forms) frames each message with a channel: 0 stdin, 1 stdout, 2 stderr, 3 the error
Status, 4 a terminal resize (`{"Width":…,"Height":…}`). A recording is the asciicast v2 form of
that stream, with timing: a header line, then `[seconds, "i", text]` for what was typed,
`[seconds, "o", text]` for what came back, `[seconds, "r", "WxH"]` for resizes and
`[seconds, "m", text]` for the final Status. What is typed is recorded — passwords typed into a
shell too; treat recordings as the secrets they may hold.

Over SPDY/3.1 (`SpdySession`) the same channels are streams named by their `streamtype` header;
the recording is the same. A session whose SPDY framing cannot be followed is not recorded
blind: `SpdySession.feed` raises, and the gateway ends the session.

The file's SHA-256 goes into the session's ResponseComplete audit event, so the hash-chained
audit log vouches for the recording (`kubegate audit play --verify-with LOG`).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from kubegate import spdy

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
MAX_SPDY_FRAME = 1 << 20


class Recording:
    def __init__(self, path: Path, *, title: str, subprotocol: str, clock: Callable[[], float] = time.time,
                 env: dict[str, str] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.clock = path, clock
        self.base64 = subprotocol.startswith("base64.")
        self.started = clock()
        # Per direction, so a character split across two messages is recorded whole.
        self._decoders = {kind: codecs.getincrementaldecoder("utf-8")(errors="replace") for kind in "io"}
        # Binary, hashed as it is written: the SHA-256 the audit log records is ready when the
        # session ends, without reading back a file that may be gigabytes long.
        self._file = open(path, "wb")
        self._sha256 = hashlib.sha256()
        os.chmod(path, 0o600)
        header = {"version": 2, "width": 80, "height": 24, "timestamp": int(self.started), "title": title,
                  "env": env or {}}
        self._write(header)

    def _write(self, item: Any) -> None:
        line = (json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8")
        self._sha256.update(line)
        self._file.write(line)
        self._file.flush()

    def _at(self) -> float:
        return round(self.clock() - self.started, 6)

    def typed(self, data: bytes) -> None:
        if text := self._decoders["i"].decode(data):
            self._write([self._at(), "i", text])

    def shown(self, data: bytes) -> None:
        if text := self._decoders["o"].decode(data):
            self._write([self._at(), "o", text])

    def resized(self, payload: bytes) -> None:
        """One terminal size message: `{"Width": 80, "Height": 24}`."""
        try:
            size = json.loads(payload)
            self._write([self._at(), "r", f"{int(size['Width'])}x{int(size['Height'])}"])
        except (ValueError, KeyError, TypeError):
            self._write([self._at(), "m", f"unreadable resize: {payload[:200].decode('utf-8', 'replace')}"])

    def note(self, text: str) -> None:
        self._write([self._at(), "m", text])

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
        if from_client and channel == STDIN:
            self.typed(payload)
        elif from_client and channel == RESIZE:
            self.resized(payload)
        elif not from_client and channel in (STDOUT, STDERR):
            self.shown(payload)
        elif not from_client and channel == ERROR:
            self.note(payload.decode("utf-8", errors="replace"))

    def close(self) -> str:
        """Close the file; its SHA-256."""
        if not self._file.closed:
            self._file.close()
        return self._sha256.hexdigest()


def file_sha256(path: Path) -> str:
    """A recording's SHA-256, read in chunks (a recording may be larger than memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class SpdySession:
    """Feeds a Recording from the raw bytes of a SPDY/3.1 exec or attach session, both directions."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        # Go clients send frames of 32 KiB at most; a larger one is not buffered for, it is refused.
        self._readers = {True: spdy.Reader(MAX_SPDY_FRAME), False: spdy.Reader(MAX_SPDY_FRAME)}
        self._types: dict[int, str] = {}  # stream id -> streamtype, from the client's SYN_STREAMs
        self._resize = bytearray()
        self._broken = False

    def feed(self, data: bytes, from_client: bool) -> None:
        """Raises spdy.ProtocolError for bytes it cannot follow (recorded as a note)."""
        if self._broken:
            raise spdy.ProtocolError("the session could not be followed")
        try:
            frames = self._readers[from_client].feed(data)
        except spdy.ProtocolError as e:
            self._broken = True
            self.recording.note(f"recording stopped: unreadable SPDY from the "
                                f"{'client' if from_client else 'cluster'}: {e}")
            raise
        for frame in frames:
            if frame.type == spdy.SYN_STREAM and from_client:
                self._types[frame.stream_id] = frame.headers.get("streamtype", "")
            elif frame.type == 0:
                if frame.stream_id not in self._types:
                    self._broken = True
                    self.recording.note(f"recording stopped: data on stream {frame.stream_id}, never opened")
                    raise spdy.ProtocolError(f"data on stream {frame.stream_id}, which was never opened")
                if frame.data:
                    self._data(self._types[frame.stream_id], frame.data, from_client)

    def _data(self, kind: str, data: bytes, from_client: bool) -> None:
        if from_client and kind == "stdin":
            self.recording.typed(data)
        elif from_client and kind == "resize":
            # a stream of JSON objects, one per size change
            self._resize += data
            decoder = json.JSONDecoder()
            text = self._resize.decode("utf-8", errors="replace")
            at = 0
            while True:
                rest = text[at:].lstrip()
                if not rest:
                    break
                try:
                    _, end = decoder.raw_decode(rest)
                except ValueError:
                    break
                start = len(text) - len(rest)
                self.recording.resized(text[start:start + end].encode())
                at = start + end
            self._resize = bytearray(text[at:].encode())
        elif not from_client and kind in ("stdout", "stderr"):
            self.recording.shown(data)
        elif not from_client and kind == "error":
            self.recording.note(data.decode("utf-8", errors="replace"))


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
