"""The tiny built-in command set that `exec` runs "inside" an emulated container.

Nothing here touches the host: there is no real shell, file system or process. It exists so
that exec, attach and their exit codes, stdin, stdout and stderr can be exercised end to end.

Supported: echo [-n], cat [FILE], true, false, exit [N], sleep SECONDS (at most 30), hostname,
whoami, id, pwd, env/printenv, date, ls, uname [-a], and `sh -c SCRIPT` whose SCRIPT chains
those with `;`, `&&` and `||`, where a command may end in `>&2` to write to stderr. `sh` with
no `-c` reads commands line by line from stdin until `exit` or end of input.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shlex
from dataclasses import dataclass, field
from typing import Awaitable, Callable

Writer = Callable[[bytes], Awaitable[None]]


class ExitScript(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class NotFound(Exception):
    """The executable does not exist in the emulated container (a runtime error, exit 126/127)."""


@dataclass
class Stdin:
    """Bytes the client sent on the stdin channel; `None` pushed by the transport means closed."""

    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    _buffer: bytes = b""
    _closed: bool = False

    async def read(self) -> bytes | None:
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        if self._closed:
            return None
        chunk = await self.queue.get()
        if chunk is None:
            self._closed = True
        return chunk

    async def readline(self) -> bytes | None:
        while b"\n" not in self._buffer and b"\r" not in self._buffer:
            if self._closed:
                break
            data = await self.queue.get()
            if data is None:
                self._closed = True
                break
            self._buffer += data
        if not self._buffer:
            return None
        ends = [i for i in (self._buffer.find(b"\n"), self._buffer.find(b"\r")) if i >= 0]
        cut = min(ends) + 1 if ends else len(self._buffer)
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line


@dataclass
class Container:
    pod: str
    name: str
    env: dict[str, str]
    stdout: Writer
    stderr: Writer
    stdin: Stdin | None
    tty: bool = False


COMMANDS = ("echo", "cat", "true", "false", "exit", "sleep", "hostname", "whoami", "id", "pwd",
            "env", "printenv", "date", "ls", "uname", "sh", "bash")


async def _builtin(argv: list[str], c: Container, out: Writer) -> int:
    name, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    if name == "echo":
        newline = True
        if args and args[0] == "-n":
            newline, args = False, args[1:]
        await out((" ".join(args) + ("\n" if newline else "")).encode())
        return 0
    if name == "cat":
        if args:
            if args[0] == "/etc/hostname":
                await out(f"{c.pod}\n".encode())
                return 0
            await c.stderr(f"cat: {args[0]}: No such file or directory\n".encode())
            return 1
        while c.stdin is not None and (data := await c.stdin.read()) is not None:
            await out(data)
        return 0
    if name in ("true", "false"):
        return 0 if name == "true" else 1
    if name == "exit":
        raise ExitScript(int(args[0]) if args and args[0].lstrip("-").isdigit() else 0)
    if name == "sleep":
        try:
            await asyncio.sleep(min(float(args[0]), 30.0))
        except (IndexError, ValueError):
            await c.stderr(b"sleep: missing or invalid operand\n")
            return 1
        return 0
    if name == "hostname":
        await out(f"{c.pod}\n".encode())
        return 0
    if name == "whoami":
        await out(b"root\n")
        return 0
    if name == "id":
        await out(b"uid=0(root) gid=0(root) groups=0(root)\n")
        return 0
    if name == "pwd":
        await out(b"/\n")
        return 0
    if name in ("env", "printenv"):
        await out("".join(f"{k}={v}\n" for k, v in c.env.items()).encode())
        return 0
    if name == "date":
        await out(dt.datetime.now(dt.UTC).strftime("%a %b %d %H:%M:%S UTC %Y\n").encode())
        return 0
    if name == "ls":
        await out(b"bin\netc\nproc\nroot\ntmp\nusr\nvar\n")
        return 0
    if name == "uname":
        await out(b"Linux kubegate-emulator 6.1.0 x86_64 GNU/Linux\n" if "-a" in args else b"Linux\n")
        return 0
    if name in ("sh", "bash"):
        if len(args) >= 2 and args[0] == "-c":
            return await run_script(args[1], c)
        return await _interactive(c)
    raise NotFound(argv[0])


def _split_script(script: str) -> list[tuple[str, list[str]]]:
    """Tokens of a script, grouped into commands with the operator that precedes each."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|>")
    lexer.whitespace_split = True
    out: list[tuple[str, list[str]]] = []
    op, cur = ";", list[str]()
    for tok in lexer:
        if tok in (";", "&&", "||"):
            if cur:
                out.append((op, cur))
            op, cur = tok, []
        else:
            cur.append(tok)
    if cur:
        out.append((op, cur))
    return out


async def run_script(script: str, c: Container) -> int:
    code = 0
    try:
        for op, argv in _split_script(script):
            if (op == "&&" and code != 0) or (op == "||" and code == 0):
                continue
            out = c.stdout
            if argv[-2:] in ([">&", "2"], ["1>&", "2"]):  # shlex splits `>&2` in two
                out, argv = c.stderr, argv[:-2]
            try:
                code = await _builtin(argv, c, out)
            except NotFound:
                await c.stderr(f"sh: {argv[0]}: not found\n".encode())
                code = 127
    except ExitScript as e:
        return e.code
    return code


async def _interactive(c: Container) -> int:
    code = 0
    while c.stdin is not None:
        await c.stdout(b"# ")
        line = await c.stdin.readline()
        if line is None:
            return code
        if c.tty:  # a terminal's line discipline echoes what is typed
            await c.stdout(line.replace(b"\r", b"\r\n"))
        text = line.decode(errors="replace").strip()
        if not text:
            continue
        try:
            code = await run_script(text, c)
        except ExitScript as e:
            return e.code
        if text.split()[0] == "exit":
            return code
    return code


async def run(argv: list[str], c: Container) -> int:
    """Run argv in the emulated container; returns the exit code. Raises NotFound."""
    if not argv:
        raise NotFound("")
    try:
        return await _builtin(argv, c, c.stdout)
    except ExitScript as e:
        return e.code
