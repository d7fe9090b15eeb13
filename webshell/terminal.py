"""One browser terminal: the restricted shell (rshell) in a PTY, bridged to a WebSocket, recorded.

The PTY is ptyprocess's (the layer terminado and pexpect stand on; terminado itself is a Tornado
server, and the webshell is aiohttp). Bytes from the PTY go to the browser and to the session's
asciicast recording; keystrokes and resizes from the browser go to the PTY and the recording.
The shell's verdicts arrive on a control pipe and become audit events.

Browser → server messages are JSON text frames: `{"type": "input", "data": "..."}` and
`{"type": "resize", "cols": 120, "rows": 40}`. Server → browser: binary frames of terminal output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

import yaml
from aiohttp import WSMsgType, web
from ptyprocess import PtyProcess

from kubegate.audit import events
from kubegate.audit.recording import Recording

from .config import WebshellConfig
from .sessions import WebSession

log = logging.getLogger("kubegate.webshell")
Gateway = Callable[..., Awaitable[tuple[int, Any]]]
MAX_INPUT = 64 * 1024  # one message from the browser


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


class Terminal:
    def __init__(self, cfg: WebshellConfig, session: WebSession, cluster: str, namespace: str,
                 ws: web.WebSocketResponse, gateway: Gateway) -> None:
        self.cfg, self.session, self.cluster, self.namespace, self.ws = cfg, session, cluster, namespace, ws
        self.gateway = gateway  # calls the gateway's API: (method, path, token, body) -> (status, JSON)
        self.id = uuid.uuid4().hex[:12]
        self.recording_path = cfg.recordings_dir / f"webshell-{session.token_session}-{self.id}.cast"
        self.started = time.time()
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._proc: PtyProcess | None = None
        self._control_r = -1
        self._control_buf = b""
        self._closed = False
        self._reply_w = -1
        self._waiting: asyncio.Task[None] | None = None  # a command waiting for its approver
        self.watchers: set[web.WebSocketResponse] = set()  # auditors watching it live

    def _audit(self, kind: str, **annotations: str) -> None:
        try:
            self.cfg.audit(events.webshell_event(kind, self.session.token_session, self.session.user, time.time(),
                                                 {"kubegate.io/cluster": self.cluster,
                                                  "kubegate.io/terminal": self.id, **annotations}))
        except OSError:
            log.exception("cannot audit webshell event %s", kind)

    def _spawn(self, cols: int, rows: int) -> None:
        kubeconfig = write_kubeconfig(self.cfg, self.session, self.cluster, self.namespace)
        bin_dir = self.session.directory / "bin"
        link = bin_dir / "kubectl"
        if not link.exists():
            link.symlink_to(self.cfg.kubectl)
        # The shell's whole environment: nothing of the gateway's own leaks into it.
        env = {"KUBECONFIG": str(kubeconfig), "HOME": str(self.session.directory / "home"), "PATH": str(bin_dir),
               "TERM": "xterm-256color", "LANG": "C.UTF-8", **self.cfg.extra_env}
        control_r, control_w = os.pipe()
        reply_r, reply_w = os.pipe()
        for fd in (control_w, reply_r):
            os.set_inheritable(fd, True)  # pipes are close-on-exec; the shell keeps these
        self._control_r, self._reply_w = control_r, reply_w
        self._proc = PtyProcess.spawn(
            [sys.executable, "-I", "-m", "kubegate.webshell.rshell", "--kubectl", str(link),
             "--files", str(self.session.directory / "files"), "--cluster", self.cluster,
             "--namespace", self.namespace, "--user", self.session.user, "--control-fd", str(control_w),
             "--reply-fd", str(reply_r)],
            env=env, cwd=str(self.session.directory / "files"), dimensions=(rows, cols), pass_fds=(control_w, reply_r))
        os.close(control_w)
        os.close(reply_r)

    def _on_output(self) -> None:
        assert self._proc is not None
        try:
            data = os.read(self._proc.fd, 65536)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._proc.fd)
            self._out.put_nowait(None)
            return
        self.recording.shown(data)
        self._out.put_nowait(data)

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
            kind = str(message.get("kind", ""))
            if kind == "refused":
                self._audit("refused", **{"kubegate.io/webshell-line": str(message.get("line", "")),
                                          "kubegate.io/webshell-refusal": str(message.get("why", ""))})
            elif kind == "command":
                self._audit("command", **{"kubegate.io/webshell-line": str(message.get("line", "")),
                                          "kubegate.io/webshell-risk": ",".join(message.get("risk") or [])})
            elif kind == "approval":
                self._waiting = asyncio.create_task(self._approval(str(message.get("line", "")),
                                                                   [str(r) for r in message.get("risk") or []]))
            elif kind == "approval-cancelled" and self._waiting is not None:
                self._waiting.cancel()
            elif kind == "finished":
                self._audit("finished", **{"kubegate.io/webshell-line": str(message.get("line", "")),
                                           "kubegate.io/webshell-exit": str(message.get("exit", ""))})

    def _reply(self, **message: Any) -> None:
        try:
            os.write(self._reply_w, (json.dumps(message) + "\n").encode())
        except OSError:
            pass

    async def _approval(self, line: str, risk: list[str]) -> None:
        """Open a ticket for LINE at the gateway (as the user), wait for its decision, use it up."""
        status, ticket = await self.gateway("POST", "/kubegate/v1/approvals", self.session.token, {
            "command": line, "cluster": self.cluster, "namespace": self.namespace,
            "reasons": [f"webshell: {r}" for r in risk]})
        if status != 201:
            self._reply(decision="error", why=str(ticket.get("message", status)) if isinstance(ticket, dict) else status)
            return
        self._audit("approval-requested", **{"kubegate.io/webshell-line": line, "kubegate.io/approval": ticket["id"]})
        self._reply(ticket=ticket["id"])
        while not self._closed:
            await asyncio.sleep(1.0)
            status, current = await self.gateway("GET", f"/kubegate/v1/approvals/{ticket['id']}", self.session.token)
            state = current.get("status") if status == 200 and isinstance(current, dict) else None
            if state == "approved":
                status, used = await self.gateway("POST", f"/kubegate/v1/approvals/{ticket['id']}/use",
                                                  self.session.token)
                if status == 200:
                    self._reply(decision="approved", by=current.get("decidedBy", ""))
                else:
                    self._reply(decision="error", why=str(used.get("message", status)))
                return
            if state in ("denied", "expired") or (status == 200 and state == "used"):
                self._reply(decision="denied" if state == "denied" else "error", by=current.get("decidedBy", ""),
                            why=f"the ticket is {state}")
                return

    async def _send(self) -> None:
        while True:
            data = await self._out.get()
            if data is None:
                break
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
            try:
                self._proc.write(data)
            except OSError:
                pass
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
        loop = asyncio.get_running_loop()
        loop.add_reader(self._proc.fd, self._on_output)
        loop.add_reader(self._control_r, self._on_control)
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
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._proc is not None:
            for fd in (self._proc.fd, self._control_r):
                try:
                    loop.remove_reader(fd)
                except (ValueError, OSError):
                    pass
            try:
                self._proc.terminate(force=True)
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
