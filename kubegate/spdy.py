"""SPDY/3.1 framing, as far as Kubernetes' exec, attach and port-forward streams use it.

Clients that do not speak the WebSocket exec protocols (kubectl before 1.31, or with
KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false, and many client libraries) upgrade the connection to
SPDY/3.1 and open one stream per channel, named by a `streamtype` header: `error`, `stdin`,
`stdout`, `stderr`, `resize`. Frames (draft-mbelshe-httpbis-spdy-00 / SPDY/3):

    control: 1 | version(15) | type(16) | flags(8) | length(24) | payload
    data:    0 | stream id(31)          | flags(8) | length(24) | payload

Header blocks are compressed with one zlib stream per direction that starts from a fixed
dictionary (below), so every header block of a direction must be inflated in order, even the
ones nobody needs. `Reader` turns one direction's bytes into frames; `Writer` builds frames
(the test cluster's exec endpoint answers with it).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
MAX_FRAME = 1 << 24  # the 24-bit length field's limit

_NAMES = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age "
    "allow authorization cache-control connection content-base content-encoding content-language content-length "
    "content-location content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# The SPDY/3 header compression dictionary: each common header name length-prefixed, then common values.
DICTIONARY = b"".join(struct.pack(">I", len(n)) + n.encode() for n in _NAMES) + _TAIL.encode()


class ProtocolError(ValueError):
    """Bytes that are not SPDY/3.1."""


@dataclass
class Frame:
    type: int  # 0: a data frame; else the control frame's type
    flags: int
    stream_id: int  # 0 for frames about the session (SETTINGS, PING, GOAWAY, a session WINDOW_UPDATE)
    data: bytes = b""  # a data frame's payload, a PING's id, a WINDOW_UPDATE's delta
    headers: dict[str, str] = field(default_factory=dict)  # SYN_STREAM, SYN_REPLY, HEADERS

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def _headers(block: bytes) -> dict[str, str]:
    def take(at: int) -> tuple[bytes, int]:
        if at + 4 > len(block):
            raise ProtocolError("truncated header block")
        (n,) = struct.unpack_from(">I", block, at)
        if at + 4 + n > len(block):
            raise ProtocolError("truncated header block")
        return block[at + 4:at + 4 + n], at + 4 + n

    if len(block) < 4:
        raise ProtocolError("truncated header block")
    (count,) = struct.unpack_from(">I", block)
    at, out = 4, {}
    for _ in range(count):
        name, at = take(at)
        value, at = take(at)
        out[name.decode("latin-1").lower()] = value.decode("latin-1")  # several values: NUL-separated
    return out


class Reader:
    """One direction of a SPDY/3.1 session: feed it bytes as they come, get whole frames back."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            first, flags_length = struct.unpack_from(">II", self._buffer)
            flags, length = flags_length >> 24, flags_length & 0xFFFFFF
            if length > self.max_frame:
                raise ProtocolError(f"a frame of {length} bytes")
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            if not first & 0x80000000:
                frames.append(Frame(0, flags, first & 0x7FFFFFFF, payload))
                continue
            version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
            if version != VERSION:
                raise ProtocolError(f"SPDY version {version}")
            frames.append(self._control(kind, flags, payload))
        return frames

    def _inflated(self, block: bytes) -> dict[str, str]:
        try:
            return _headers(self._inflate.decompress(block))
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from None

    def _control(self, kind: int, flags: int, payload: bytes) -> Frame:
        def stream_id() -> int:
            if len(payload) < 4:
                raise ProtocolError(f"control frame {kind} too short")
            return int(struct.unpack_from(">I", payload)[0]) & 0x7FFFFFFF

        if kind == SYN_STREAM:
            if len(payload) < 10:
                raise ProtocolError("SYN_STREAM too short")
            return Frame(kind, flags, stream_id(), headers=self._inflated(payload[10:]))
        if kind in (SYN_REPLY, HEADERS):
            return Frame(kind, flags, stream_id(), headers=self._inflated(payload[4:]))
        if kind in (RST_STREAM, WINDOW_UPDATE):
            return Frame(kind, flags, stream_id(), payload[4:8])
        return Frame(kind, flags, 0, payload)  # SETTINGS, PING, GOAWAY and unknown types


class Writer:
    """Frames for one direction of a session (its own header compressor)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    @staticmethod
    def _control(kind: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def _block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.encode("latin-1") + struct.pack(">I", len(v)) + v.encode("latin-1")
            for k, v in headers.items())
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + self._block(headers)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0, payload)

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, fin: bool = False) -> bytes:
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0,
                             struct.pack(">I", stream_id) + self._block(headers or {}))

    @staticmethod
    def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
        if len(payload) >= MAX_FRAME:
            raise ValueError("split payloads of 16 MiB or more")
        return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload

    def ping(self, ping_id: bytes) -> bytes:
        return self._control(PING, 0, ping_id)

    def window_update(self, stream_id: int, delta: int) -> bytes:
        return self._control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))
