"""Every kind of record a signed-in user's actions create is bounded in the state store, on both
backends: approval tickets, access requests, ended sessions (which are also purged once their
tokens would have expired anyway)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubegate.gateway.authz import access
from kubegate.gateway.authz.authorizer import PolicyHolder
from kubegate.gateway.config.settings import Issuer
from kubegate.gateway.gates import approvals
from kubegate.gateway.identity import sessions
from kubegate.gateway.identity.authn import TokenIssuer
from kubegate.gateway.identity.identity import Identity
from kubegate.gateway.request.info import RequestInfo
from kubegate.gateway.state import store as state_store
from kubegate.gateway.state.store import StateStore, StoreFull

POLICIES = Path(__file__).resolve().parents[3] / "policies" / "authz"
BOUND = 3


@pytest.fixture(autouse=True)
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_store, "MAX_RECORDS", BOUND)
    monkeypatch.setattr(access, "MAX_RECORDS", BOUND)
    monkeypatch.setattr(sessions, "MAX_ENDED", BOUND)


def test_approval_tickets_are_bounded(on_store: Callable[[Any], Any]) -> None:
    async def scenario(store: StateStore) -> None:
        service = approvals.ApprovalService(store, PolicyHolder(POLICIES))
        for n in range(BOUND + 1):
            info = RequestInfo(path=f"/api/v1/namespaces/a/configmaps/c{n}", verb="delete", is_resource=True,
                               api_version="v1", namespace="a", resource="configmaps", name=f"c{n}")
            request = approvals.Request("DELETE", info.path, "", "", b"")
            if n < BOUND:
                await service.find_or_open(Identity(f"u{n}"), "hz-1", info, request, "change", ["r"])
            else:
                with pytest.raises(StoreFull, match=f"{BOUND} approval tickets are on record"):
                    await service.find_or_open(Identity(f"u{n}"), "hz-1", info, request, "change", ["r"])
    on_store(scenario)


def test_access_requests_are_bounded(on_store: Callable[[Any], Any]) -> None:
    async def scenario(store: StateStore) -> None:
        service = access.AccessService(store, PolicyHolder(POLICIES))
        for n in range(BOUND):
            await service.request(Identity(f"u{n}"), "developer", "hz-1", "shop", 3600, "on call")
        with pytest.raises(access.AccessError, match="too many access requests"):
            await service.request(Identity("one-more"), "developer", "hz-1", "shop", 3600, "on call")
    on_store(scenario)


def test_ended_sessions_are_bounded_and_purged(on_store: Callable[[Any], Any]) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    now = [1_800_000_000.0]

    async def scenario(store: StateStore) -> None:
        service = sessions.SessionService(store, TokenIssuer(Issuer(), key, lambda: now[0]), clock=lambda: now[0])
        ada = Identity("ada")
        for _ in range(BOUND):
            sid = str((await service.mint(ada, now[0] + 3600, 3600))["id"])
            await service.end(sid, Identity("ada", session=sid))  # a logout is never refused for room
        with pytest.raises(sessions.SessionError, match=f"{BOUND} sessions ended"):
            await service.mint(ada, now[0] + 3600, 3600)
        assert await service.purge() == 0  # their tokens could still be used: kept
        now[0] += sessions.MAX_SECONDS + 1
        assert await service.purge() == BOUND
        await service.mint(ada, now[0] + 3600, 3600)  # room again
    on_store(scenario)
