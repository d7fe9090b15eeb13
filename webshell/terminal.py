"""One browser terminal: the restricted shell (rshell) in a PTY, bridged to a WebSocket, recorded.

The PTY is ptyprocess's (the layer terminado and pexpect stand on; terminado itself is a Tornado
server, and the webshell is aiohttp). Bytes from the PTY go to the browser and to the session's
asciicast recording; keystrokes and resizes from the browser go to the PTY and the recording.
The shell's verdicts arrive on a control pipe and become audit events.

Browser → server messages are JSON text frames: `{"type": "input", "data": "..."}` and
`{"type": "resize", "cols": 120, "rows": 40}`. Server → browser: binary frames of terminal output.

Nothing here blocks the event loop the gateway's other users share: the PTY is written without
blocking, what it cannot take yet waits in a bounded buffer (past it, input is dropped with a note:
a paste larger than MAX_PENDING), and output is read only while the browser keeps up (past
MAX_QUEUED unsent bytes the PTY is not read, so kubectl waits, not memory).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

import yaml
import aiohttp
from aiohttp import WSMsgType, web
from ptyprocess import PtyProcess

from kubegate.audit import events
from kubegate.audit.recording import Recording

from .config import WebshellConfig
from .sandbox import Sandbox
from .sessions import WebSession

log = logging.getLogger("kubegate.webshell")
Gateway = Callable[..., Awaitable[tuple[int, Any]]]
MAX_INPUT = 64 * 1024  # one message from the browser
MAX_PENDING = 1024 * 1024  # input the PTY has not taken yet
MAX_QUEUED = 1024 * 1024  # output the browser has not taken yet; the PTY is read again below a quarter
POLL_SECONDS = 1.0  # how often a waiting command asks the gateway about its tickets


def write_kubeconfig(cfg: WebshellConfig, session: WebSession, cluster: str, namespace: str) -> Path:
    """The session's kubeconfig: the gateway (for CLUSTER), its CA, and the session's own token."""
    server = cfg.gateway_url.rstrip("/") + ("" if cluster == cfg.default_cluster else f"/clusters/{cluster}")
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "webshell",
           "clusters": [{"name": cluster, "cluster": {
               "server": server, "tls-server-name": cfg.gateway_server_name,
               "certificate-authority-data": base64.b64encode(cfg.gateway_ca_file.read_bytes()).decode()}}],
           "users": [{"name": session.user, "user": {"token": session.token}}],
           "contexts": [{"name": "webshell", "context": {"cluster": cluster, "user": session.user,
                                                        **({"namespace": namespace} if namespace else {})}}]}
    path = session.directory / "kubeconfig"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(doc))
    return path


class Gone(Exception):
    """The gateway's answer about a ticket could not be had."""


class Terminal:
    def __init__(self, cfg: WebshellConfig, sandbox: Sandbox, session: WebSession, cluster: str, namespace: str,
                 ws: web.WebSocketResponse, gateway: Gateway) -> None:
        self.cfg, self.session, self.cluster, self.namespace, self.ws = cfg, session, cluster, namespace, ws
        self.sandbox = sandbox
        self.gateway = gateway  # calls the gateway's API: (method, path, token, body) -> (status, JSON)
        self.id = uuid.uuid4().hex[:12]
        self.recording_path = cfg.recordings_dir / f"webshell-{session.token_session}-{self.id}.cast"
        self.started = time.time()
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0  # output bytes in _out
        self._reading = False  # whether the PTY is being read (paused while the browser lags)
        self._pending = bytearray()  # input the PTY has not taken yet
        self._writing = False
        self._dropped = False
        self._proc: PtyProcess | None = None
        self._control_r = -1
        self._control_buf = b""
        self._closed = False
        self._reply_w = -1
        self._waiting: asyncio.Task[None] | None = None  # a command waiting for its approver
        self._seen: set[str] = set()  # tickets already shown in this terminal
        self._offered: list[str] = []  # the tickets last given to the shell to show
        self._withdrawing: set[asyncio.Task[None]] = set()
        self.watchers: set[web.WebSocketResponse] = set()  # auditors watching it live

    def _audit(self, kind: str, **annotations: str) -> None:
        try:
            self.cfg.audit(events.webshell_event(kind, self.session.token_session, self.session.user, time.time(),
                                                 {"kubegate.io/cluster": self.cluster,
                                                  "kubegate.io/terminal": self.id, **annotations}))
        except OSError:
            log.exception("cannot audit webshell event %s", kind)

    def _spawn(self, cols: int, rows: int) -> None:
        write_kubeconfig(self.cfg, self.session, self.cluster, self.namespace)
        # The shell's whole environment: nothing of the webshell's own leaks into it, and kubectl
        # gets the sandbox's (sandbox.Sandbox.environment) on top of nothing.
        env = {"HOME": str(self.session.directory / "home"), "PATH": "/nonexistent", "TERM": "xterm-256color",
               "LANG": "C.UTF-8", **self.cfg.extra_env}
        control_r, control_w = os.pipe()
        reply_r, reply_w = os.pipe()
        for fd in (control_w, reply_r):
            os.set_inheritable(fd, True)  # pipes are close-on-exec; the shell keeps these
        self._control_r, self._reply_w = control_r, reply_w
        os.set_blocking(reply_w, False)  # a shell that stops reading its replies must not stop us
        argv = [sys.executable, "-I", "-m", "kubegate.webshell.rshell", "--sandbox", self.sandbox.to_json(),
                "--session", str(self.session.directory), "--cluster", self.cluster, "--namespace", self.namespace,
                "--user", self.session.user, "--control-fd", str(control_w), "--reply-fd", str(reply_r)]
        if not self.cfg.check_arguments:
            argv.append("--no-argument-check")
        self._proc = PtyProcess.spawn(argv, env=env, cwd=str(self.session.directory / "files"),
                                      dimensions=(rows, cols), pass_fds=(control_w, reply_r))
        os.close(control_w)
        os.close(reply_r)
        os.set_blocking(self._proc.fd, False)

    # -- output: PTY -> browser, read only while the browser keeps up ----------------------------

    def _read_pty(self, on: bool) -> None:
        if self._proc is None or on == self._reading or self._closed:
            return
        loop = asyncio.get_running_loop()
        if on:
            loop.add_reader(self._proc.fd, self._on_output)
        else:
            loop.remove_reader(self._proc.fd)
        self._reading = on

    def _on_output(self) -> None:
        assert self._proc is not None
        try:
            data = os.read(self._proc.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._read_pty(False)
            self._out.put_nowait(None)
            return
        self.recording.shown(data)
        self._queued += len(data)
        self._out.put_nowait(data)
        if self._queued > MAX_QUEUED:
            self._read_pty(False)  # kubectl's output waits in the PTY until the browser catches up

    # -- input: browser -> PTY, never blocking ---------------------------------------------------

    def _write_pty(self, data: bytes) -> None:
        if b"\x03" in data:  # Ctrl-C: what was typed ahead is dropped, as a terminal does
            self._pending.clear()
        elif len(self._pending) + len(data) > MAX_PENDING:
            if not self._dropped:
                self._dropped = True
                self._out.put_nowait(b"\r\nkubegate: input dropped: the terminal has not taken what was sent "
                                     b"before it yet\r\n")
            return
        self._pending += data
        self._flush()
        if b"\x03" in data and self._pending and self._proc is not None:
            try:  # the PTY cannot even take the interrupt now: deliver it as its line discipline would
                os.killpg(os.tcgetpgrp(self._proc.fd), signal.SIGINT)
            except OSError:
                pass

    def _flush(self) -> None:
        if self._proc is None or self._closed:
            return
        while self._pending:
            try:
                written = os.write(self._proc.fd, self._pending[:65536])
            except BlockingIOError:
                break
            except OSError:
                self._pending.clear()
                break
            del self._pending[:written]
        loop = asyncio.get_running_loop()
        if self._pending and not self._writing:
            loop.add_writer(self._proc.fd, self._flush)
            self._writing = True
        elif not self._pending:
            self._dropped = False
            if self._writing:
                loop.remove_writer(self._proc.fd)
                self._writing = False

    # -- the shell's control channel: audit, and approvals -------------------------------------

    def _on_control(self) -> None:
        try:
            chunk = os.read(self._control_r, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self._control_r)
            return
        self._control_buf += chunk
        while b"\n" in self._control_buf:
            line, self._control_buf = self._control_buf.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self._control(message)

    def _control(self, message: dict[str, Any]) -> None:
        kind, line = str(message.get("kind", "")), str(message.get("line", ""))
        if kind == "refused":
            self._audit("refused", **{"kubegate.io/webshell-line": line,
                                      "kubegate.io/webshell-refusal": str(message.get("why", ""))})
        elif kind == "command":
            self._audit("command", **{"kubegate.io/webshell-line": line,
                                      "kubegate.io/webshell-command": str(message.get("command", ""))})
        elif kind == "finished":
            self._audit("finished", **{"kubegate.io/webshell-line": line,
                                       "kubegate.io/webshell-exit": str(message.get("exit", ""))})
        elif kind == "tickets":
            self._waiting = asyncio.create_task(self._answer(message, self._new_tickets()))
        elif kind == "await":
            ids = [str(t) for t in message.get("tickets") or []]
            self._waiting = asyncio.create_task(self._answer(message, self._decision(ids)))
        elif kind == "withdraw":
            if self._waiting is not None:
                self._waiting.cancel()
            task = asyncio.create_task(self._withdraw([str(t) for t in message.get("tickets") or []], line))
            self._withdrawing.add(task)  # held until done: the loop keeps only weak references to tasks
            task.add_done_callback(self._withdrawing.discard)

    def _reply(self, **message: Any) -> None:
        try:
            os.write(self._reply_w, (json.dumps(message) + "\n").encode())
        except OSError:
            pass

    async def _answer(self, question: dict[str, Any], work: Awaitable[dict[str, Any]]) -> None:
        try:
            answer = await work
        except Gone as e:
            answer = {"error": str(e)}
        self._reply(n=question.get("n"), **answer)

    async def _tickets(self) -> list[dict[str, Any]]:
        """This session's tickets, as the gateway tells them to the user."""
        try:
            status, body = await self.gateway("GET", "/kubegate/v1/approvals", self.session.token)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise Gone(f"the gateway cannot be reached: {e}") from None
        if status != 200 or not isinstance(body, dict):
            raise Gone(f"the gateway answered {status}")
        return [t for t in body.get("items") or [] if isinstance(t, dict)
                and t.get("session") == self.session.token_session and t.get("user") == self.session.user]

    async def _new_tickets(self) -> dict[str, Any]:
        """Tickets the last command opened: pending ones of this session this terminal has not shown."""
        fresh = [t for t in await self._tickets() if t.get("status") == "pending" and t.get("id") not in self._seen]
        for t in fresh:
            self._seen.add(str(t["id"]))
            self._audit("approval-requested", **{"kubegate.io/approval": str(t["id"])})
        self._offered = [str(t["id"]) for t in fresh]
        return {"tickets": [{"id": t["id"], "reasons": t.get("reasons") or []} for t in fresh]}

    async def _decision(self, ids: list[str]) -> dict[str, Any]:
        """Wait until every ticket in IDS is decided: approved (all of them) or why not."""
        while not self._closed:
            by_id = {t.get("id"): t for t in await self._tickets()}
            states = {i: (by_id.get(i) or {}).get("status", "gone") for i in ids}
            refused = next((i for i in ids if states[i] not in ("pending", "approved")), None)
            if refused is not None:
                t = by_id.get(refused) or {}
                decision = "denied" if states[refused] == "denied" else "error"
                return {"decision": decision, "by": t.get("decidedBy", ""), "why": f"ticket {refused} is {states[refused]}"}
            if all(state == "approved" for state in states.values()):
                return {"decision": "approved", "by": ", ".join(sorted({str(by_id[i].get("decidedBy")) for i in ids}))}
            await asyncio.sleep(POLL_SECONDS)
        return {"decision": "error", "why": "the terminal closed"}

    async def _withdraw(self, ids: list[str], line: str) -> None:
        """Withdraw IDS; none named (Ctrl-C before the shell showed them): the ones last offered to
        it, and this session's pending tickets not offered yet, which the interrupted command opened."""
        if not ids:
            ids = list(self._offered)
            try:
                ids += [str(t["id"]) for t in (await self._new_tickets())["tickets"]]
            except Gone as e:
                log.warning("cannot find the tickets to withdraw: %s", e)
        for ticket in ids:
            try:
                status, _ = await self.gateway("POST", f"/kubegate/v1/approvals/{ticket}/withdraw", self.session.token)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                status = 0
                log.warning("cannot withdraw ticket %s: %s", ticket, e)
            self._audit("approval-withdrawn", **{"kubegate.io/webshell-line": line, "kubegate.io/approval": ticket,
                                                 "kubegate.io/webshell-withdrawn": str(status == 200).lower()})

    async def _send(self) -> None:
        while True:
            data = await self._out.get()
            if data is None:
                break
            self._queued -= len(data)
            if self._queued < MAX_QUEUED // 4:
                self._read_pty(True)
            for watcher in list(self.watchers):
                try:
                    await watcher.send_bytes(data)
                except (ConnectionResetError, RuntimeError):
                    self.watchers.discard(watcher)
            try:
                await self.ws.send_bytes(data)
            except (ConnectionResetError, RuntimeError):
                break
        await self.close("the shell ended")

    def _input(self, raw: str) -> None:
        try:
            message: Any = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict) or self._proc is None:
            return
        self.session.last_seen = time.time()  # typing keeps a session alive
        if message.get("type") == "input" and isinstance(message.get("data"), str):
            data = message["data"].encode()[:MAX_INPUT]
            self.recording.typed(data)
            self._write_pty(data)
        elif message.get("type") == "resize":
            try:
                cols, rows = max(10, min(500, int(message["cols"]))), max(5, min(200, int(message["rows"])))
            except (KeyError, TypeError, ValueError):
                return
            self._proc.setwinsize(rows, cols)
            self.recording.resized(json.dumps({"Width": cols, "Height": rows}).encode())

    async def run(self, cols: int = 80, rows: int = 24) -> None:
        self.recording = Recording(self.recording_path, title=f"{self.session.user} on {self.cluster} (webshell)",
                                   subprotocol="", env={"TERM": "xterm-256color"})
        self._spawn(cols, rows)
        assert self._proc is not None
        self._audit("terminal-started", **{"kubegate.io/recording": self.recording_path.name,
                                           "kubegate.io/namespace": self.namespace})
        self._read_pty(True)
        asyncio.get_running_loop().add_reader(self._control_r, self._on_control)
        sender = asyncio.create_task(self._send())
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    self._input(msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            await self.close("the browser closed the terminal")
            sender.cancel()

    async def close(self, why: str) -> None:
        if self._closed:
            return
        self._read_pty(False)
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._proc is not None:
            for remove in (lambda: loop.remove_reader(self._control_r), lambda: loop.remove_writer(self._proc.fd)):
                try:
                    remove()
                except (ValueError, OSError):
                    pass
            try:  # ptyprocess waits between its signals: not on the loop
                await asyncio.to_thread(self._proc.terminate, True)
            except OSError:
                pass
        if self._waiting is not None:
            self._waiting.cancel()
        for fd in (self._control_r, self._reply_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.recording.note(f"session ended: {why}")
        digest = self.recording.close()
        self._audit("terminal-ended", **{"kubegate.io/recording": self.recording_path.name,
                                         "kubegate.io/recording-sha256": digest, "kubegate.io/why": why})
        for watcher in list(self.watchers):
            await watcher.close(message=why.encode()[:120])
        if not self.ws.closed:
            await self.ws.close(message=why.encode()[:120])
