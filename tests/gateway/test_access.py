"""Time-bound access: request, approval by someone else who may approve, use, and expiry (fake time)."""

from __future__ import annotations

import pytest

from kubegate.gateway.access import AccessError, AccessService, MemoryRequestStore
from kubegate.gateway.authz import PolicyHolder
from kubegate.gateway.identity import Identity
from kubegate.gateway.requestinfo import RequestInfo
from tests.conftest import POLICY_DIR

DAN = Identity("dan", ("team-shop",))
SAM = Identity("sam", ("kubegate:sre",))
VIC = Identity("vic", ("kubegate:viewers",))
ADA = Identity("ada", ("kubegate:cluster-admins",))
PATCH_LEDGER = RequestInfo(path="", verb="patch", is_resource=True, api_group="apps", namespace="payments",
                           resource="deployments", name="ledger")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env() -> tuple[AccessService, PolicyHolder, Clock, list[tuple[str, str, str]]]:
    clock = Clock()
    holder = PolicyHolder(POLICY_DIR)
    events: list[tuple[str, str, str]] = []
    service = AccessService(MemoryRequestStore(), holder, clock=clock,
                            audit=lambda event, req, actor: events.append((event, req.id, actor)))
    return service, holder, clock, events


def allowed(service: AccessService, holder: PolicyHolder, who: Identity, info: RequestInfo) -> bool:
    service.sync(holder.current)
    return holder.current.decide(who, "hz-1", info).allowed


def test_a_ten_minute_grant_works_then_lapses(env: tuple) -> None:  # type: ignore[type-arg]
    service, holder, clock, events = env
    assert not allowed(service, holder, DAN, PATCH_LEDGER)  # cached as a refusal before the grant
    req = service.request(DAN, "developer", "hz-1", "payments", 600, "hotfix INC-42")
    assert not allowed(service, holder, DAN, PATCH_LEDGER)  # pending is not granted
    service.approve(req.id, SAM)
    assert allowed(service, holder, DAN, PATCH_LEDGER)
    decision = holder.current.decide(DAN, "hz-1", PATCH_LEDGER)
    assert decision.rule is not None and decision.rule.subject == "role:developer"
    assert not allowed(service, holder, DAN, RequestInfo(**{**PATCH_LEDGER.__dict__, "namespace": "other"}))
    clock.now += 599
    assert allowed(service, holder, DAN, PATCH_LEDGER)
    clock.now += 2
    assert not allowed(service, holder, DAN, PATCH_LEDGER)
    assert service.store.get(req.id).status == "expired"  # type: ignore[union-attr]
    assert [e[0] for e in events] == ["requested", "approved", "expired"]
    assert events[1][2] == "sam" and events[2][2] == "kubegate"


def test_nobody_approves_their_own_request(env: tuple) -> None:  # type: ignore[type-arg]
    service, *_ = env
    req = service.request(ADA, "break-glass", "hz-1", "*", 600, "incident")
    with pytest.raises(AccessError, match="their own") as err:
        service.approve(req.id, ADA)  # ada may approve break-glass for others, not for herself
    assert err.value.code == 403
    assert service.approve(req.id, Identity("ann", ("kubegate:cluster-admins",))).status == "approved"


@pytest.mark.parametrize(("approver", "role"), [
    pytest.param(VIC, "developer", id="viewer-approves-nothing"),
    pytest.param(SAM, "break-glass", id="sre-cannot-approve-break-glass"),
    pytest.param(DAN, "viewer", id="developer-approves-nothing"),
])
def test_only_those_the_policy_allows_approve(env: tuple, approver: Identity, role: str) -> None:  # type: ignore[type-arg]
    service, *_ = env
    req = service.request(Identity("zoe"), role, "hz-1", "shop", 600, "need it")
    with pytest.raises(AccessError, match="may not approve") as err:
        service.approve(req.id, approver)
    assert err.value.code == 403
    assert service.store.get(req.id).status == "pending"  # type: ignore[union-attr]


def test_denied_requests_grant_nothing_and_decisions_are_final(env: tuple) -> None:  # type: ignore[type-arg]
    service, holder, _, _ = env
    req = service.request(DAN, "developer", "hz-1", "payments", 600, "please")
    service.deny(req.id, SAM)
    assert not allowed(service, holder, DAN, PATCH_LEDGER)
    with pytest.raises(AccessError) as err:
        service.approve(req.id, SAM)
    assert err.value.code == 409


@pytest.mark.parametrize(("role", "duration", "reason", "message"), [
    pytest.param("god-mode", 600, "x", "no role named", id="unknown-role"),
    pytest.param("developer", 0, "x", "duration", id="zero-duration"),
    pytest.param("developer", 10 * 24 * 3600, "x", "duration", id="too-long"),
    pytest.param("developer", 600, "  ", "reason is required", id="no-reason"),
])
def test_bad_requests_are_refused(env: tuple, role: str, duration: int, reason: str, message: str) -> None:  # type: ignore[type-arg]
    service, *_ = env
    with pytest.raises(AccessError, match=message) as err:
        service.request(DAN, role, "hz-1", "shop", duration, reason)
    assert err.value.code == 400


def test_grants_survive_a_policy_reload(env: tuple, tmp_path) -> None:  # type: ignore[no-untyped-def,type-arg]
    import shutil

    service, _, clock, _ = env
    shutil.copytree(POLICY_DIR, tmp_path / "authz")
    holder = PolicyHolder(tmp_path / "authz")
    service2 = AccessService(service.store, holder, clock=clock)
    req = service2.request(DAN, "developer", "hz-1", "payments", 600, "hotfix")
    service2.approve(req.id, SAM)
    (tmp_path / "authz" / "extra.csv").write_text("p, role:viewer, *:shop, pods, delete, *, allow\n")
    assert holder.reload_if_changed() is True
    assert allowed(service2, holder, DAN, PATCH_LEDGER)
