"""A tamper-evident audit log: every line chained to the one before it by hash.

Each line is an audit.k8s.io/v1 Event whose annotation `kubegate.io/chain` is `SEQ:PREV`: its
place in the log (counting on across rotated files) and the SHA-256 of the line before it. Each
file starts with a `log-opened` event that links to the last line of the file before it. The hash
of the newest line is also kept beside the log (`FILE.head`), so an edit of the last line shows;
with the size and inode of the file it ends, it also tells processes sharing the log where the
chain stands without reading the log back.

`verify` reads files in order (oldest first) and names, by file and line, each line that was
edited, deleted, inserted or moved.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANNOTATION = "kubegate.io/chain"
GENESIS = "0" * 64


def seal(event: dict[str, Any], seq: int, prev: str) -> tuple[str, str]:
    """(the line to write, its hash)."""
    sealed = {**event, "annotations": {**(event.get("annotations") or {}), ANNOTATION: f"{seq}:{prev}"}}
    # default=str: a value JSON has no type for is written as its text, never left unwritten (a
    # batch that cannot be written is retried, and the gateway refuses requests meanwhile).
    line = json.dumps(sealed, separators=(",", ":"), sort_keys=True, default=str)
    return line, digest(line)


def digest(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


def opened_event(previous_file: str, now_text: str) -> dict[str, Any]:
    """The first event of every file: which file came before (its last hash is in the chain)."""
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete", "verb": "create", "requestURI": "/kubegate/v1/auditlogs",
        "user": {"username": "system:kubegate"}, "sourceIPs": [], "userAgent": "kubegate",
        "objectRef": {"apiGroup": "kubegate.io", "apiVersion": "v1", "resource": "auditlogs"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": now_text, "stageTimestamp": now_text,
        "annotations": {"kubegate.io/event": "log-opened", "kubegate.io/previous-file": previous_file},
    }


@dataclass
class _Line:
    where: str  # FILE:LINE
    text: str
    seq: int | None
    prev: str


def _parse(where: str, text: str) -> _Line:
    try:
        event = json.loads(text)
        seq_text, _, prev = event["annotations"][ANNOTATION].partition(":")
        return _Line(where, text, int(seq_text), prev)
    except (ValueError, KeyError, TypeError, AttributeError):
        return _Line(where, text, None, "")


def last_link(path: Path) -> tuple[int, str] | None:
    """(seq, hash) of the last chained line of a log file, or None if it has none."""
    try:
        with open(path, "rb") as f:
            return last_link_of(f.fileno())
    except OSError:
        return None


def last_link_of(fd: int, block: int = 8192) -> tuple[int, str] | None:
    """As `last_link`, for an open file, reading back from its end only as far as the last chained
    line (a log of gigabytes is not read whole to find where to go on): a block of about one event
    first, doubling while no whole line has been found."""
    pos = os.fstat(fd).st_size
    partial = b""
    while pos > 0:
        step = min(block, pos)
        block = min(block * 2, 1 << 20)
        pos -= step
        lines = (os.pread(fd, step, pos) + partial).split(b"\n")
        # the first piece may be the end of a line that starts further back, unless at the start
        partial, complete = (lines[0], lines[1:]) if pos > 0 else (b"", lines)
        for raw in reversed(complete):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            line = _parse("", text)
            if line.seq is not None:
                return line.seq, digest(text)
    return None


def verify(paths: list[Path]) -> list[str]:
    """Problems with the chain through these files (oldest first), each naming FILE:LINE."""
    lines: list[_Line] = []
    problems: list[str] = []
    for path in paths:
        try:
            texts = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{path}: cannot be read: {e}")
            continue
        lines += [_parse(f"{path}:{n}", t) for n, t in enumerate(texts, 1) if t.strip()]
    chained = [ln for ln in lines if ln.seq is not None]
    problems += [f"{ln.where}: not a chained audit event: inserted, or edited beyond reading" for ln in lines
                 if ln.seq is None]
    by_seq: dict[int, _Line] = {}
    for ln in chained:
        assert ln.seq is not None
        if ln.seq in by_seq:
            problems.append(f"{ln.where}: repeats the place ({ln.seq}) of {by_seq[ln.seq].where}: inserted or copied")
        else:
            by_seq[ln.seq] = ln
    if not by_seq:
        return problems
    seqs = sorted(by_seq)
    # Out of order: a line whose place is below one that came before it in the files.
    highest = -1
    for ln in chained:
        assert ln.seq is not None
        if ln.seq < highest:
            problems.append(f"{ln.where}: out of order (place {ln.seq} after place {highest}): lines were moved")
        highest = max(highest, ln.seq)
    for a, b in zip(seqs, seqs[1:]):
        first, second = by_seq[a], by_seq[b]
        if b != a + 1:
            gap = f"{a + 1}" if b == a + 2 else f"{a + 1} to {b - 1}"
            problems.append(f"{second.where}: line(s) at place {gap} before it were deleted")
        elif second.prev != digest(first.text):
            problems.append(f"{first.where}: edited (the line after it holds another hash for it)")
    first = by_seq[seqs[0]]
    if seqs[0] == 0 and first.prev != GENESIS:
        problems.append(f"{first.where}: the first line of the log does not start the chain")
    return problems


def head_line(seq: int, digest_: str, size: int, inode: int) -> str:
    """FILE.head: the newest line's place and hash, and the log file (its size and inode) they are
    the end of. Fixed width, so it is overwritten in place."""
    return f"{seq:020d} {digest_} {size:020d} {inode:020d}\n"


def read_head(text: str) -> tuple[str, str, int | None, int | None]:
    """(place, hash, size, inode) from FILE.head; size and inode are None in a head written
    without them."""
    fields = (text.splitlines() or [""])[0].split()
    seq_text, want = (fields + ["", ""])[:2]
    if len(fields) == 4 and fields[2].isdigit() and fields[3].isdigit():
        return seq_text, want, int(fields[2]), int(fields[3])
    return seq_text, want, None, None


def check_head(path: Path, head_file: Path) -> list[str]:
    """The newest line against the hash kept beside the log (an edit of the last line)."""
    try:
        seq_text, want, _, _ = read_head(head_file.read_text())
    except OSError:
        return []
    link = last_link(path)
    if link is None:
        return [f"{path}: the log is empty, but {head_file.name} records place {seq_text}"]
    seq, have = link
    if not seq_text.isdigit() or seq != int(seq_text):
        recorded = int(seq_text) if seq_text.isdigit() else seq_text
        return [f"{path}: ends at place {seq}, but {head_file.name} records place {recorded}: lines at the end "
                "were deleted or added"]
    if have != want:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [f"{path}:{len(lines)}: edited (its hash is not the one kept in {head_file.name})"]
    return []
