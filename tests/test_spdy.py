"""SPDY/3.1 framing: the header dictionary is Go's, frames written are read back, and bytes that
are not SPDY are refused rather than guessed at. (kubectl itself speaks to it in
tests/audit/test_recording.py, through the gateway, to the emulator's SPDY exec.)"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest

from kubegate import spdy

GO_DICTIONARY = Path("/usr/share/gocode/src/github.com/moby/spdystream/spdy/dictionary.go")


def test_the_header_dictionary_is_the_one_kubernetes_clients_use() -> None:
    source = GO_DICTIONARY.read_text()  # Debian golang-github-docker-spdystream-dev (./dev installs it)
    body = source[source.index("headerDictionary = "):]
    go_bytes = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body))
    assert len(go_bytes) > 1000
    assert spdy.DICTIONARY == go_bytes


def test_frames_written_are_read_back_in_order() -> None:
    client, server = spdy.Writer(), spdy.Writer()
    wire = (client.syn_stream(1, {"streamtype": "error"}) + client.syn_stream(3, {"streamtype": "stdin"})
            + spdy.Writer.data(3, b"ls\n") + spdy.Writer.data(3, b"", fin=True) + client.ping(b"\0\0\0\1"))
    reader = spdy.Reader()
    frames = []
    for at in range(0, len(wire), 5):  # the network splits frames anywhere
        frames += reader.feed(wire[at:at + 5])
    assert [(f.type, f.stream_id) for f in frames] == [
        (spdy.SYN_STREAM, 1), (spdy.SYN_STREAM, 3), (0, 3), (0, 3), (spdy.PING, 0)]
    assert frames[1].headers == {"streamtype": "stdin"}  # the second block inflates with the first's state
    assert frames[2].data == b"ls\n" and not frames[2].fin and frames[3].fin
    back = spdy.Reader().feed(server.syn_reply(3) + server.window_update(3, 100) + server.goaway(3))
    assert [f.type for f in back] == [spdy.SYN_REPLY, spdy.WINDOW_UPDATE, spdy.GOAWAY]
    assert struct.unpack(">I", back[1].data) == (100,)


@pytest.mark.parametrize("wire", [
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="http"),
    pytest.param(struct.pack(">HHI", 0x8002, 1, 10) + b"\0" * 10, id="spdy-2"),
    pytest.param(struct.pack(">HHI", 0x8003, 1, 14) + b"\0" * 10 + b"junk", id="bad-header-block"),
    pytest.param(struct.pack(">HHI", 0x8003, 1, 4) + b"\0" * 4, id="short-syn-stream"),
])
def test_bytes_that_are_not_spdy_are_refused(wire: bytes) -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.Reader(max_frame=1 << 20).feed(wire)  # HTTP reads as a data frame of 2 MiB


def test_a_header_block_compressed_without_the_dictionary_is_refused() -> None:
    plain = zlib.compressobj()
    block = plain.compress(struct.pack(">I", 0)) + plain.flush(zlib.Z_SYNC_FLUSH)
    frame = struct.pack(">HHI", 0x8003, spdy.SYN_REPLY, 4 + len(block)) + struct.pack(">I", 1) + block
    frames = spdy.Reader().feed(frame)  # a block that needs no dictionary is still a valid block
    assert frames[0].headers == {}
    with pytest.raises(spdy.ProtocolError):
        spdy.Reader(max_frame=100).feed(struct.pack(">II", 1, 101) + b"x" * 101)
