"""Time-bound access: request, approval by someone else who may approve, use, and expiry (fake time).

Every test runs on both state store backends; with Redis, a second AccessService on its own
connection plays a second gateway replica.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Coroutine, Iterator, TypeVar

import pytest

from kubegate.gateway.authz.access import AccessError, AccessService
from kubegate.gateway.authz.authorizer import PolicyHolder
from kubegate.gateway.identity.identity import Identity
from kubegate.gateway.request.info import RequestInfo
from kubegate.gateway.state.store import MemoryStore, StateStore
from kubegate.gateway.state.redis_store import RedisStore
from tests.conftest import POLICY_DIR

T = TypeVar("T")
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


@dataclass
class Env:
    service: AccessService
    holder: PolicyHolder
    clock: Clock
    events: list[tuple[str, str, str]]
    loop: asyncio.AbstractEventLoop
    new_store: Any
    stores: list[StateStore] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def allowed(self, who: Identity, info: RequestInfo, service: AccessService | None = None) -> bool:
        service = service or self.service
        self.run(service.sync(service.policy.current))
        return service.policy.current.decide(who, "hz-1", info).allowed

    def replica(self, holder: PolicyHolder | None = None) -> AccessService:
        """Another gateway's view of the same state (memory: the same store object)."""
        return AccessService(self.new_store(), holder or PolicyHolder(POLICY_DIR), clock=self.clock,
                             audit=lambda event, req, actor: self.events.append((event, req.id, actor)))


@pytest.fixture(params=["memory", "redis"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    loop = asyncio.new_event_loop()
    stores: list[StateStore] = []
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_server").url, f"a{uuid.uuid4().hex[:8]}:"
        new_store: Any = lambda: stores.append(RedisStore(url, prefix=prefix)) or stores[-1]  # noqa: E731
    else:
        shared = MemoryStore()
        new_store = lambda: shared  # noqa: E731
    clock = Clock()
    holder = PolicyHolder(POLICY_DIR)
    events: list[tuple[str, str, str]] = []
    service = AccessService(new_store(), holder, clock=clock,
                            audit=lambda event, req, actor: events.append((event, req.id, actor)))
    yield Env(service, holder, clock, events, loop, new_store, stores)
    for store in stores:
        loop.run_until_complete(store.close())
    loop.close()


def test_a_ten_minute_grant_works_then_lapses(env: Env) -> None:
    service, holder, clock, events = env.service, env.holder, env.clock, env.events
    assert not env.allowed(DAN, PATCH_LEDGER)  # cached as a refusal before the grant
    req = env.run(service.request(DAN, "developer", "hz-1", "payments", 600, "hotfix INC-42"))
    assert not env.allowed(DAN, PATCH_LEDGER)  # pending is not granted
    env.run(service.approve(req.id, SAM))
    assert env.allowed(DAN, PATCH_LEDGER)
    decision = holder.current.decide(DAN, "hz-1", PATCH_LEDGER)
    assert decision.rule is not None and decision.rule.subject == "role:developer"
    assert not env.allowed(DAN, RequestInfo(**{**PATCH_LEDGER.__dict__, "namespace": "other"}))
    clock.now += 599
    assert env.allowed(DAN, PATCH_LEDGER)
    clock.now += 2
    assert not env.allowed(DAN, PATCH_LEDGER)
    assert env.run(service.get(req.id)).status == "expired"  # type: ignore[union-attr]
    assert [e[0] for e in events] == ["requested", "approved", "expired"]
    assert events[1][2] == "sam" and events[2][2] == "kubegate"


def test_a_grant_approved_on_one_replica_works_and_lapses_on_another(env: Env) -> None:
    other = env.replica()
    assert not env.allowed(DAN, PATCH_LEDGER, other)  # the other replica caches a refusal first
    req = env.run(env.service.request(DAN, "developer", "hz-1", "payments", 600, "hotfix"))
    env.run(env.service.approve(req.id, SAM))
    assert env.allowed(DAN, PATCH_LEDGER, other)
    env.clock.now += 601
    assert not env.allowed(DAN, PATCH_LEDGER, other)
    assert not env.allowed(DAN, PATCH_LEDGER)
    # the expiry is audited once, by whichever replica saw it first
    assert [e[0] for e in env.events].count("expired") == 1


def test_two_approvers_racing_on_two_replicas_decide_once(env: Env) -> None:
    other = env.replica()
    req = env.run(env.service.request(DAN, "developer", "hz-1", "payments", 600, "hotfix"))
    ann = Identity("ann", ("kubegate:cluster-admins",))

    async def race() -> list[Any]:
        return await asyncio.gather(env.service.approve(req.id, SAM), other.deny(req.id, ann),
                                    return_exceptions=True)

    outcomes = env.run(race())
    decided = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, AccessError)]
    assert len(decided) == 1 and len(refused) == 1 and refused[0].code == 409
    assert env.run(env.service.get(req.id)).status == decided[0].status  # type: ignore[union-attr]


def test_nobody_approves_their_own_request(env: Env) -> None:
    req = env.run(env.service.request(ADA, "break-glass", "hz-1", "*", 600, "incident"))
    with pytest.raises(AccessError, match="their own") as err:
        env.run(env.service.approve(req.id, ADA))  # ada may approve break-glass for others, not for herself
    assert err.value.code == 403
    assert env.run(env.service.approve(req.id, Identity("ann", ("kubegate:cluster-admins",)))).status == "approved"


@pytest.mark.parametrize(("approver", "role"), [
    pytest.param(VIC, "developer", id="viewer-approves-nothing"),
    pytest.param(SAM, "break-glass", id="sre-cannot-approve-break-glass"),
    pytest.param(DAN, "viewer", id="developer-approves-nothing"),
])
def test_only_those_the_policy_allows_approve(env: Env, approver: Identity, role: str) -> None:
    req = env.run(env.service.request(Identity("zoe"), role, "hz-1", "shop", 600, "need it"))
    with pytest.raises(AccessError, match="may not approve") as err:
        env.run(env.service.approve(req.id, approver))
    assert err.value.code == 403
    assert env.run(env.service.get(req.id)).status == "pending"  # type: ignore[union-attr]
    assert not env.service.may_see(approver, req)  # nor read the reason
    assert env.service.may_see(Identity("zoe"), req)


def test_denied_requests_grant_nothing_and_decisions_are_final(env: Env) -> None:
    req = env.run(env.service.request(DAN, "developer", "hz-1", "payments", 600, "please"))
    env.run(env.service.deny(req.id, SAM))
    assert not env.allowed(DAN, PATCH_LEDGER)
    with pytest.raises(AccessError) as err:
        env.run(env.service.approve(req.id, SAM))
    assert err.value.code == 409


@pytest.mark.parametrize(("role", "duration", "reason", "message"), [
    pytest.param("god-mode", 600, "x", "no role named", id="unknown-role"),
    pytest.param("developer", 0, "x", "duration", id="zero-duration"),
    pytest.param("developer", 10 * 24 * 3600, "x", "duration", id="too-long"),
    pytest.param("developer", 600, "  ", "reason is required", id="no-reason"),
])
def test_bad_requests_are_refused(env: Env, role: str, duration: int, reason: str, message: str) -> None:
    with pytest.raises(AccessError, match=message) as err:
        env.run(env.service.request(DAN, role, "hz-1", "shop", duration, reason))
    assert err.value.code == 400


def test_grants_survive_a_policy_reload(env: Env, tmp_path: Any) -> None:
    import shutil

    shutil.copytree(POLICY_DIR, tmp_path / "authz")
    holder = PolicyHolder(tmp_path / "authz")
    service = env.replica(holder)
    req = env.run(service.request(DAN, "developer", "hz-1", "payments", 600, "hotfix"))
    env.run(service.approve(req.id, SAM))
    (tmp_path / "authz" / "extra.csv").write_text("p, role:viewer, *:shop, pods, delete, *, allow\n")
    assert holder.reload_if_changed() is True
    assert env.allowed(DAN, PATCH_LEDGER, service)


def test_a_redis_outage_applies_no_grants_until_it_answers(tmp_path: Any) -> None:
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    loop = asyncio.new_event_loop()
    env = Env(AccessService(RedisStore(server.url, prefix="o:"), PolicyHolder(POLICY_DIR), clock=Clock()),
              PolicyHolder(POLICY_DIR), Clock(), [], loop, None)
    service = env.service
    try:
        req = env.run(service.request(DAN, "developer", "hz-1", "payments", 600, "hotfix"))
        env.run(service.approve(req.id, SAM))
        assert env.allowed(DAN, PATCH_LEDGER)
        server.stop()
        assert not env.allowed(DAN, PATCH_LEDGER)  # fail closed: grants cannot be confirmed
        server.start()  # empty: the grant is gone with the data
        assert not env.allowed(DAN, PATCH_LEDGER)
        req = env.run(service.request(DAN, "developer", "hz-1", "payments", 600, "again"))
        env.run(service.approve(req.id, SAM))
        assert env.allowed(DAN, PATCH_LEDGER)
    finally:
        env.run(service.store.close())
        loop.close()
        server.stop()


# -- bounded: what any signed-in user can put in the store ------------------------------------------

@pytest.mark.parametrize(("kwargs", "code", "says"), [
    pytest.param({"reason": "x" * 1025}, 413, "longer than 1024", id="long-reason"),
    pytest.param({"reason": "ok\x1b[2J"}, 400, "control characters", id="control-in-reason"),
    pytest.param({"namespace": "Not A Namespace"}, 400, "not a namespace", id="bad-namespace"),
    pytest.param({"namespace": "a" * 64}, 400, "not a namespace", id="namespace-too-long"),
    pytest.param({"cluster": "nowhere"}, 400, "no cluster named 'nowhere'", id="unknown-cluster"),
])
def test_access_requests_are_validated(env: Env, kwargs: dict[str, Any], code: int, says: str) -> None:
    service = AccessService(env.new_store(), env.holder, clock=env.clock, clusters=lambda: {"hz-1"})
    args = {"role": "developer", "cluster": "hz-1", "namespace": "payments", "duration_seconds": 600,
            "reason": "hotfix", **kwargs}
    with pytest.raises(AccessError) as err:
        env.run(service.request(DAN, **args))
    assert err.value.code == code and says in err.value.message


def test_open_requests_per_user_are_capped(env: Env) -> None:
    for i in range(5):
        env.run(env.service.request(DAN, "developer", "hz-1", "payments", 600, f"try {i}"))
    with pytest.raises(AccessError) as err:
        env.run(env.service.request(DAN, "developer", "hz-1", "payments", 600, "one more"))
    assert err.value.code == 429
    env.run(env.service.request(VIC, "developer", "hz-1", "payments", 600, "someone else may"))


def test_undecided_requests_lapse_and_old_records_are_purged(env: Env) -> None:
    pending = env.run(env.service.request(DAN, "developer", "hz-1", "payments", 600, "nobody looks"))
    denied = env.run(env.service.request(DAN, "viewer", "hz-1", "payments", 600, "no"))
    env.run(env.service.deny(denied.id, SAM))
    env.clock.now += 24 * 3600 + 1
    env.run(env.service.purge())
    assert env.run(env.service.get(pending.id)).status == "expired"  # type: ignore[union-attr]
    assert ("expired", pending.id, "kubegate") in env.events
    for i in range(5):  # the lapsed one no longer counts against dan's waiting requests
        env.run(env.service.request(DAN, "developer", "hz-1", "payments", 600, f"again {i}"))
    env.clock.now += 7 * 24 * 3600
    env.run(env.service.purge())
    assert {r.reason for r in env.run(env.service.all())} == {f"again {i}" for i in range(5)}
