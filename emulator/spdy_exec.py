"""exec and attach over SPDY/3.1, the server side, as the kubelet's streaming server speaks it.

The client (kubectl with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false, older kubectl, many client
libraries) asks for `Upgrade: SPDY/3.1` with its `X-Stream-Protocol-Version`s; after the 101 it
opens one stream per channel (`streamtype`: error, stdin, stdout, stderr, resize), each answered
with a SYN_REPLY. Output goes as data frames on the client's streams; the end is a Status on the
error stream (v4: also for success) and FIN on every output stream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from kubegate import spdy

PROTOCOLS = ("v4.channel.k8s.io",)
WAIT_FOR_STREAMS_SECONDS = 10.0


class Upgraded(web.StreamResponse):
    """A 101 whose connection now belongs to the session: aiohttp must not end it with a body."""

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class Session:
    """aiohttp hands the upgraded connection's bytes to `feed_data` (its payload parser interface)."""

    def __init__(self, transport: asyncio.Transport, wanted: set[str]) -> None:
        self.transport, self.wanted = transport, wanted
        self.reader, self.writer = spdy.Reader(), spdy.Writer()
        self.streams: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.gone = asyncio.Event()
        self.stdin: asyncio.Queue[bytes | None] | None = None
        self.resizes: list[dict[str, Any]] = []

    # -- aiohttp's side ---------------------------------------------------------------------------

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        try:
            frames = self.reader.feed(data)
        except spdy.ProtocolError:
            self.transport.close()
            self._end()
            return True, b""
        for frame in frames:
            self._frame(frame)
        return False, b""

    def feed_eof(self) -> None:
        self._end()

    def _end(self) -> None:
        self.gone.set()
        if self.stdin is not None:
            self.stdin.put_nowait(None)

    # -- frames from the client ---------------------------------------------------------------------

    def _frame(self, frame: spdy.Frame) -> None:
        if frame.type == spdy.SYN_STREAM:
            self.streams[frame.headers.get("streamtype", "")] = frame.stream_id
            self.transport.write(self.writer.syn_reply(frame.stream_id))
            if self.wanted <= set(self.streams):
                self.ready.set()
        elif frame.type == spdy.PING:
            self.transport.write(self.writer.ping(frame.data))
        elif frame.type == spdy.GOAWAY:
            self._end()
        elif frame.type == 0:
            self._data(frame)
        elif frame.type == spdy.RST_STREAM and frame.stream_id == self.streams.get("stdin"):
            if self.stdin is not None:
                self.stdin.put_nowait(None)

    def _data(self, frame: spdy.Frame) -> None:
        kind = next((k for k, sid in self.streams.items() if sid == frame.stream_id), "")
        if frame.data:
            # SPDY/3.1 flow control: give the window back for what was read
            self.transport.write(self.writer.window_update(frame.stream_id, len(frame.data)))
            self.transport.write(self.writer.window_update(0, len(frame.data)))
        if kind == "stdin" and self.stdin is not None:
            if frame.data:
                self.stdin.put_nowait(frame.data)
            if frame.fin:
                self.stdin.put_nowait(None)
        elif kind == "resize" and frame.data:
            for line in frame.data.decode("utf-8", "replace").splitlines():
                if line.strip():
                    self.resizes.append(json.loads(line))

    # -- to the client --------------------------------------------------------------------------------

    def send(self, kind: str, data: bytes) -> None:
        if kind in self.streams and not self.transport.is_closing():
            for at in range(0, len(data), 32 * 1024):
                self.transport.write(self.writer.data(self.streams[kind], data[at:at + 32 * 1024]))

    def finish(self, status: dict[str, Any]) -> None:
        if self.transport.is_closing():
            return
        self.send("error", json.dumps(status).encode())
        for kind in ("stdout", "stderr", "error"):
            if kind in self.streams:
                self.transport.write(self.writer.data(self.streams[kind], b"", fin=True))


async def upgrade(request: web.Request, wanted: set[str]) -> tuple[Upgraded, Session]:
    """Answer the upgrade and wait for the client's streams. Raises ValueError for a client that
    offers no protocol version served here."""
    offered = [v.strip() for h in request.headers.getall("X-Stream-Protocol-Version", []) for v in h.split(",")]
    chosen = next((p for p in PROTOCOLS if p in offered), None)
    if chosen is None:
        raise ValueError(f"none of the stream protocol versions {offered} is served (only {list(PROTOCOLS)})")
    transport = request.transport
    assert transport is not None
    resp = Upgraded(status=101, headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                         "X-Stream-Protocol-Version": chosen})
    resp.force_close()
    await resp.prepare(request)
    session = Session(transport, wanted)
    request.protocol.set_parser(session)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(session.ready.wait(), WAIT_FOR_STREAMS_SECONDS)
    except asyncio.TimeoutError:
        transport.close()
        raise ValueError(f"the client opened {sorted(session.streams)}, not {sorted(wanted)}") from None
    return resp, session
