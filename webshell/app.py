"""The webshell's HTTP server: login (OIDC with PKCE, or a pasted token), the cluster picker, the
terminal over a WebSocket, logout; started by `kubegate serve` on its own listener.

Why its own listener (`webshell.port`, default 8444) and not a path on the API port: the API port
serves Kubernetes clients only, through the gateway's request path; the webshell is a browser
application with cookies, forms and WebSockets of its own. A separate origin keeps its session
cookie away from API requests and lets it send a strict Content-Security-Policy, and operators can
expose it (an Ingress for browsers) apart from the API (TLS passthrough for kubectl).

Everything it does at the gateway it does over HTTPS with the user's own credentials: it trades
the login for a session token (/kubegate/v1/sessions) and its terminals run kubectl with that token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kubegate.audit import events

from . import history, pages, sandbox
from .config import WebshellConfig
from .sessions import Sessions, WebSession
from .terminal import Terminal

log = logging.getLogger("kubegate.webshell")
COOKIE = "__Host-kubegate-session"
LOGIN_COOKIE = "__Host-kubegate-login"  # the login form's CSRF token, before there is a session
STATIC = Path(__file__).resolve().parent / "static"
BRAKES_SECONDS = 2.0  # how long the brakes the gateway reported are shown before asking again
# 'wasm-unsafe-eval': the replay player's terminal emulator is WebAssembly (no JavaScript eval).
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class Webshell:
    def __init__(self, cfg: WebshellConfig) -> None:
        self.cfg = cfg
        self.sessions = Sessions(cfg.work_dir, idle_seconds=cfg.idle_seconds, max_seconds=cfg.max_seconds)
        self.terminals: dict[str, set[Terminal]] = {}  # by web session
        self.live: dict[str, Terminal] = {}  # by terminal id
        self._gateway_ssl = ssl.create_default_context(cafile=str(cfg.gateway_ca_file))
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._brakes: list[dict[str, Any]] = []  # the emergency brakes on, as last asked
        self._brakes_read = float("-inf")
        self._waiting_seen: dict[str, tuple[float, int]] = {}  # web session -> (asked at, tickets waiting)
        self._reaper: asyncio.Task[None] | None = None
        self.port = 0
        self.origin = self._origin(cfg.public_url)
        self.sandbox = sandbox.Sandbox("none" if cfg.sandbox == "none" else "bwrap", cfg.kubectl,
                                       problem="not checked yet")

    @staticmethod
    def _origin(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    # -- lifecycle ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers], client_max_size=64 * 1024)
        app.router.add_get("/", self.home)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login_token)
        app.router.add_get("/login/oidc", self.login_oidc)
        app.router.add_get("/login/callback", self.login_callback)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/terminal", self.terminal_page)
        app.router.add_get("/ws/terminal", self.terminal_socket)
        app.router.add_get("/sessions", self.sessions_page)
        app.router.add_get("/sessions/{terminal}", self.session_page)
        app.router.add_get("/recordings/{terminal}.cast", self.recording)
        app.router.add_get("/ws/watch/{terminal}", self.watch_socket)
        app.router.add_get("/approvals", self.approvals_page)
        app.router.add_post("/approvals/{id}/{verb}", self.approvals_decide)
        app.router.add_get("/access", self.access_page)
        app.router.add_post("/access", self.access_request)
        app.router.add_post("/access/{id}/{verb}", self.access_decide)
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        return app

    async def start(self) -> None:
        self.sandbox = await asyncio.to_thread(sandbox.make, self.cfg.sandbox, self.cfg.kubectl)
        if self.sandbox.kind == "none":
            log.warning("webshell.sandbox is none: terminals' kubectl runs as this process's user, with its files in "
                        "reach; only a webshell contained by other means (its own pod) may run so")
        elif self.sandbox.problem:
            log.error("webshell terminals are off: %s (`kubegate docs webshell`: \"What contains a terminal\")", self.sandbox.problem)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(str(self.cfg.cert_file), str(self.cfg.key_file))
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=tls)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._reaper = asyncio.create_task(self._reap(), name="webshell-session-reaper")

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for session in self.sessions.live():
            await self._end(session, "the gateway stopped")
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _reap(self) -> None:
        """Idle and absolute timeouts: a session past either is ended, its terminals closed."""
        while True:
            await asyncio.sleep(max(0.5, min(5.0, self.cfg.idle_seconds / 4)))
            for session in self.sessions.expired():
                await self._end(session, "the session expired", dropped=True)

    # -- helpers -----------------------------------------------------------------------------

    def health(self) -> list[str]:
        """Lines for /readyz?verbose: whether terminals can be opened, and how they are contained."""
        if self.sandbox.kind == "none":
            return ["[!]webshell sandbox: NONE (webshell.sandbox: none): terminals' kubectl runs as the webshell's "
                    "own user; only safe where the webshell is contained by other means (its own pod)"]
        if self.sandbox.problem:
            return [f"[-]webshell sandbox: terminals are OFF: {self.sandbox.problem}"]
        return ["[+]webshell sandbox ok (bwrap)"]

    async def livez(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready while terminals can be opened (a sandbox, or `sandbox: none` said outright)."""
        lines = self.health()
        ready = self.sandbox.usable
        text = "\n".join(lines) + "\n" if "verbose" in request.query else ("ok" if ready else "not ready") + "\n"
        return web.Response(text=text, status=200 if ready else 503)

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Security headers on every answer: pages, files, and errors (raised ones too)."""
        try:
            response = await handler(request)
        except web.HTTPException as e:
            self._secure(e)
            raise
        self._secure(response)
        return response

    @staticmethod
    def _secure(response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")

    def _session(self, request: web.Request) -> WebSession | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _audit(self, kind: str, session: WebSession, **annotations: str) -> None:
        try:
            self.cfg.audit(events.webshell_event(kind, session.token_session, session.user, time.time(), annotations))
        except OSError:
            log.exception("cannot audit webshell %s", kind)

    @staticmethod
    def _html(text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or origin == self.origin  # a form post from this origin, or a non-browser

    async def _gateway(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        assert self._http is not None
        async with self._http.request(method, self.cfg.gateway_url.rstrip("/") + path, json=body,
                                      headers={"Authorization": f"Bearer {token}"}, ssl=self._gateway_ssl,
                                      server_hostname=self.cfg.gateway_server_name) as resp:
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, {}

    # -- login ---------------------------------------------------------------------------------

    async def login_page(self, request: web.Request, error: str = "") -> web.Response:
        csrf = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self._html(pages.login(error, csrf, self.cfg.oidc is not None), 401 if error else 200)
        response.set_cookie(LOGIN_COOKIE, csrf, secure=True, httponly=True, samesite="Strict", path="/",
                            max_age=1800)
        return response

    async def _start_session(self, credential: str) -> WebSession | str:
        """A web session for the holder of CREDENTIAL, or why not."""
        try:
            status, body = await self._gateway("POST", "/kubegate/v1/sessions", credential,
                                               {"ttlSeconds": self.cfg.max_seconds})
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            return f"the gateway cannot be reached: {e}"
        if status != 201:
            return str(body.get("message") or f"the gateway refused the login ({status})") if isinstance(body, dict) \
                else f"the gateway refused the login ({status})"
        session = self.sessions.create(str(body["user"]), tuple(str(g) for g in body.get("groups") or []),
                                       str(body["token"]), str(body["id"]), float(body["expiresAt"]))
        self._audit("login", session)
        return session

    def _signed_in(self, session: WebSession) -> web.Response:
        response = _redirect("/")
        response.set_cookie(COOKIE, session.id, secure=True, httponly=True, samesite="Strict", path="/")
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    async def login_token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        presented = str(form.get("csrf", ""))
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not self._same_origin(request) or not expected or not secrets.compare_digest(presented, expected):
            return await self.login_page(request, "the form expired; try again")
        token = str(form.get("token", "")).strip()
        if not token:
            return await self.login_page(request, "paste a token")
        result = await self._start_session(token)
        if isinstance(result, str):
            return await self.login_page(request, result.removeprefix("kubegate: "))
        return self._signed_in(result)

    async def _oidc_document(self) -> dict[str, Any]:
        assert self.cfg.oidc is not None and self._http is not None
        url = self.cfg.oidc.issuer.rstrip("/") + "/.well-known/openid-configuration"
        ctx = ssl.create_default_context(cafile=self.cfg.oidc.ca_file or None)
        async with self._http.get(url, ssl=ctx) as resp:
            doc = await resp.json(content_type=None)
        if not isinstance(doc, dict) or doc.get("issuer") != self.cfg.oidc.issuer:
            raise ValueError("the issuer's discovery document does not name it")
        return doc

    async def login_oidc(self, request: web.Request) -> web.StreamResponse:
        """The authorization-code flow with PKCE (S256): state and verifier in a short-lived cookie."""
        if self.cfg.oidc is None:
            raise web.HTTPNotFound()
        try:
            doc = await self._oidc_document()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as e:
            return await self.login_page(request, f"single sign-on is unavailable: {e}")
        verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.cfg.oidc.client_id, "redirect_uri": self._callback_url(),
            "scope": " ".join(self.cfg.oidc.scopes), "state": state, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256"})
        response = _redirect(f"{doc['authorization_endpoint']}?{query}", 302)
        # Lax: the provider's redirect back is a top-level navigation from its origin.
        response.set_cookie("kubegate-oidc", f"{state}.{verifier}", secure=True, httponly=True, samesite="Lax",
                            path="/login/callback", max_age=600)
        return response

    def _callback_url(self) -> str:
        return self.cfg.public_url.rstrip("/") + "/login/callback"

    async def login_callback(self, request: web.Request) -> web.StreamResponse:
        if self.cfg.oidc is None or self._http is None:
            raise web.HTTPNotFound()
        state, _, verifier = request.cookies.get("kubegate-oidc", "").partition(".")
        if not state or not secrets.compare_digest(state, request.query.get("state", "")):
            return await self.login_page(request, "the sign-in did not come back as it left; try again")
        code = request.query.get("code", "")
        if not code:
            return await self.login_page(request, f"single sign-on refused: {request.query.get('error', 'no code')}")
        try:
            doc = await self._oidc_document()
            ctx = ssl.create_default_context(cafile=self.cfg.oidc.ca_file or None)
            async with self._http.post(doc["token_endpoint"], ssl=ctx, data={
                    "grant_type": "authorization_code", "code": code, "redirect_uri": self._callback_url(),
                    "client_id": self.cfg.oidc.client_id, "code_verifier": verifier}) as resp:
                answer = await resp.json(content_type=None)
            id_token = str(answer["id_token"])
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError, OSError) as e:
            return await self.login_page(request, f"single sign-on failed: {e}")
        result = await self._start_session(id_token)  # the gateway verifies the ID token
        if isinstance(result, str):
            return await self.login_page(request, result.removeprefix("kubegate: "))
        response = self._signed_in(result)
        response.del_cookie("kubegate-oidc", path="/login/callback")
        return response

    # -- pages ---------------------------------------------------------------------------------

    async def _chrome(self, session: WebSession) -> pages.Chrome:
        """What every signed-in page shows around its content: a banner while an emergency brake is on
        (as the gateway says, asked at most every two seconds) and the count of tickets waiting for this
        person on the Approvals link."""
        now = time.monotonic()
        if now - self._brakes_read > BRAKES_SECONDS:
            try:
                status, body = await self._gateway("GET", "/kubegate/v1/brakes", session.token)
                self._brakes = body.get("items") or [] if status == 200 and isinstance(body, dict) else []
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                self._brakes = []
            self._brakes_read = now
        return pages.Chrome(brakes=self._brakes, waiting=await self._waiting(session))

    async def _waiting(self, session: WebSession) -> int:
        """Pending tickets this person may decide (not their own), asked at most every two seconds."""
        at, count = self._waiting_seen.get(session.id, (float("-inf"), 0))
        if time.monotonic() - at <= BRAKES_SECONDS:
            return count
        try:
            status, body = await self._gateway("GET", "/kubegate/v1/approvals", session.token)
            items = body.get("items") or [] if status == 200 and isinstance(body, dict) else []
            count = sum(1 for t in items if t.get("status") == "pending" and t.get("user") != session.user)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            count = 0
        if len(self._waiting_seen) > 10_000:
            self._waiting_seen.clear()
        self._waiting_seen[session.id] = (time.monotonic(), count)
        return count

    async def home(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        return self._html(pages.home(session, self.cfg.clusters, self.cfg.default_cluster, await self._chrome(session)))

    def _target(self, request: web.Request) -> tuple[str, str] | None:
        cluster = request.query.get("cluster", self.cfg.default_cluster or self.cfg.clusters[0])
        namespace = request.query.get("namespace", "")
        if cluster not in self.cfg.clusters:
            return None
        if namespace and (len(namespace) > 63 or not all(c.islower() or c.isdigit() or c == "-" for c in namespace)):
            return None
        return cluster, namespace

    async def terminal_page(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        target = self._target(request)
        if target is None:
            return self._html(pages.message("No such cluster", "Pick a cluster from the list.", session,
                                            await self._chrome(session)), 404)
        return self._html(pages.terminal(session, *target, chrome=await self._chrome(session)))

    async def terminal_socket(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if request.headers.get("Origin") != self.origin:
            raise web.HTTPForbidden(text="the terminal opens only from the webshell's own pages")
        if session is None:
            raise web.HTTPUnauthorized(text="sign in first")
        target = self._target(request)
        if target is None:
            raise web.HTTPBadRequest(text="no such cluster or namespace")
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        if not self.sandbox.usable:
            self._audit("terminal-refused", session, **{"kubegate.io/why": self.sandbox.problem})
            await ws.send_bytes(f"kubegate: terminals are off: no sandbox can be made for them here "
                                f"({self.sandbox.problem}). An operator fixes that, or sets webshell.sandbox: none "
                                "where the webshell is contained by other means.\r\n".encode())
            await ws.close(message=b"no sandbox")
            return ws
        terminal = Terminal(self.cfg, self.sandbox, session, *target, ws, self._gateway)
        self.terminals.setdefault(session.id, set()).add(terminal)
        self.live[terminal.id] = terminal
        try:
            cols = int(request.query.get("cols", "80"))
            rows = int(request.query.get("rows", "24"))
        except ValueError:
            cols, rows = 80, 24
        try:
            await terminal.run(max(10, min(500, cols)), max(5, min(200, rows)))
        finally:
            self.terminals.get(session.id, set()).discard(terminal)
            self.live.pop(terminal.id, None)
        return ws

    # -- sessions, recordings, live watching ---------------------------------------------------

    def _visible(self, session: WebSession, record: history.TerminalRecord) -> bool:
        """A user sees their own terminals; auditors see everyone's."""
        return record.user == session.user or session.is_auditor(self.cfg.auditor_groups)

    def _record(self, session: WebSession, terminal_id: str) -> history.TerminalRecord:
        found = next((r for r in history.terminals(self.cfg.audit_log) if r.id == terminal_id), None)
        if found is None or not self._visible(session, found):
            raise web.HTTPNotFound(text="no such session")  # the same answer whether absent or someone else's
        return found

    async def sessions_page(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        filters = {k: request.query.get(k, "").strip() for k in ("user", "cluster", "since")}
        records = [r for r in history.terminals(self.cfg.audit_log) if self._visible(session, r)
                   and (not filters["user"] or r.user == filters["user"])
                   and (not filters["cluster"] or r.cluster == filters["cluster"])
                   and (not filters["since"] or r.started >= filters["since"])]
        records.sort(key=lambda r: r.id not in self.live)  # live first, then newest first (stable)
        return self._html(pages.sessions(session, records, set(self.live),
                                         session.is_auditor(self.cfg.auditor_groups), filters, await self._chrome(session)))

    async def session_page(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        record = self._record(session, request.match_info["terminal"])
        live = record.id in self.live and session.is_auditor(self.cfg.auditor_groups)
        return self._html(pages.replay(session, record, history.api_events(self.cfg.audit_log, record.session), live,
                                       await self._chrome(session)))

    async def recording(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text="sign in first")
        record = self._record(session, request.match_info["terminal"])
        path = self.cfg.recordings_dir / record.recording
        if not record.recording or "/" in record.recording or not path.is_file():
            raise web.HTTPNotFound(text="no recording")
        return web.FileResponse(path, headers={"Content-Type": "application/x-asciicast"})

    async def watch_socket(self, request: web.Request) -> web.StreamResponse:
        """An auditor watches a live terminal: its output, as it happens; nothing typed goes in."""
        session = self._session(request)
        if request.headers.get("Origin") != self.origin or session is None:
            raise web.HTTPForbidden(text="the terminal opens only from the webshell's own pages")
        if not session.is_auditor(self.cfg.auditor_groups):
            raise web.HTTPNotFound(text="no such session")
        terminal = self.live.get(request.match_info["terminal"])
        if terminal is None:
            raise web.HTTPNotFound(text="the session is not live")
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        terminal.watchers.add(ws)
        self._audit("watched", session, **{"kubegate.io/terminal": terminal.id,
                                           "kubegate.io/watched-user": terminal.session.user})
        try:
            async for _ in ws:
                pass  # input from a watcher is ignored
        finally:
            terminal.watchers.discard(ws)
        return ws

    # -- approvals -------------------------------------------------------------------------------

    async def approvals_page(self, request: web.Request, error: str = "", notice: str = "") -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        status, body = await self._gateway("GET", "/kubegate/v1/approvals", session.token)
        items = body.get("items", []) if status == 200 and isinstance(body, dict) else []
        if status != 200 and not error:
            error = str(body.get("message", status)) if isinstance(body, dict) else str(status)
        items.sort(key=lambda t: (t.get("status") != "pending", -float(t.get("created") or 0)))
        return self._html(pages.approvals(session, items, error, notice, await self._chrome(session)),
                          200 if not error else 400)

    async def approvals_decide(self, request: web.Request) -> web.StreamResponse:
        return await self._decide(request, "/kubegate/v1/approvals", self.approvals_page)

    async def _decide(self, request: web.Request, api: str, page: Any) -> web.StreamResponse:
        """Approve or deny (a ticket, an access request) at the gateway as the signed-in user."""
        checked = await self._form(request)
        if isinstance(checked, web.StreamResponse):
            return checked
        session, _ = checked
        verb, item = request.match_info["verb"], request.match_info["id"]
        if verb not in ("approve", "deny") or not item.isalnum():
            raise web.HTTPNotFound()
        status, body = await self._gateway("POST", f"{api}/{item}/{verb}", session.token)
        if status != 200:
            return await page(request, str(body.get("message", status)).removeprefix("kubegate: "))
        return await page(request, notice=f"{item} {body['status']}")

    # -- access requests -------------------------------------------------------------------------

    async def access_page(self, request: web.Request, error: str = "", notice: str = "") -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        status, body = await self._gateway("GET", "/kubegate/v1/accessrequests", session.token)
        items = body.get("items", []) if status == 200 and isinstance(body, dict) else []
        if status != 200 and not error:
            error = str(body.get("message", f"the gateway answered {status}")) if isinstance(body, dict) else str(status)
        return self._html(pages.access(session, items, self.cfg.clusters, error, notice, await self._chrome(session)),
                          200 if not error else 400)

    async def _form(self, request: web.Request) -> tuple[WebSession, Any] | web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        form = await request.post()
        if not self._same_origin(request) or not self.sessions.csrf_ok(session, str(form.get("csrf", ""))):
            return self._html(pages.message("Not done", "The form expired; reload the page.", session), 403)
        return session, form

    async def access_request(self, request: web.Request) -> web.StreamResponse:
        checked = await self._form(request)
        if isinstance(checked, web.StreamResponse):
            return checked
        session, form = checked
        try:
            minutes = int(str(form.get("minutes", "60")))
        except ValueError:
            return await self.access_page(request, "minutes must be a number")
        status, body = await self._gateway("POST", "/kubegate/v1/accessrequests", session.token, {
            "role": str(form.get("role", "")), "cluster": str(form.get("cluster", "")),
            "namespace": str(form.get("namespace", "*")), "durationSeconds": minutes * 60,
            "reason": str(form.get("reason", ""))})
        if status != 201:
            return await self.access_page(request, str(body.get("message", status)).removeprefix("kubegate: "))
        return await self.access_page(request, notice=f"requested: {body['id']}; an approver decides on this page")

    async def access_decide(self, request: web.Request) -> web.StreamResponse:
        return await self._decide(request, "/kubegate/v1/accessrequests", self.access_page)

    # -- logout --------------------------------------------------------------------------------

    async def _end(self, session: WebSession, why: str, *, dropped: bool = False) -> None:
        for terminal in list(self.terminals.pop(session.id, set())):
            await terminal.close(why)
        try:
            await self._gateway("DELETE", f"/kubegate/v1/sessions/{session.token_session}", session.token)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            # Its token lapses at its expiry anyway; the browser's session is gone here.
            log.warning("cannot end session %s at the gateway: %s", session.token_session, e)
        self._audit("logout" if why == "logged out" else "ended", session, **{"kubegate.io/why": why})
        if not dropped:
            self.sessions.drop(session)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        form = await request.post()
        if session is not None:
            if not self._same_origin(request) or not self.sessions.csrf_ok(session, str(form.get("csrf", ""))):
                return self._html(pages.message("Not logged out", "The form expired; reload the page.", session), 403)
            await self._end(session, "logged out")
        response = _redirect("/login")
        response.del_cookie(COOKIE, path="/")
        return response


def _redirect(location: str, status: int = 303) -> web.Response:
    return web.Response(status=status, headers={"Location": location})
