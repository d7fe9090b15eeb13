"""Running the stages: in order, timed, and failing closed."""

from __future__ import annotations

import logging
import time
from typing import Sequence

from .context import GateContext
from .errors import Denial, internal
from .stages import Stage
from .state import store

log = logging.getLogger("kubegate.pipeline")


# All the time one request may spend waiting for the state store, over all its calls.
STORE_BUDGET_SECONDS = 0.5


async def run(stages: Sequence[Stage], ctx: GateContext) -> None:
    """Run every stage; raises the Denial that ended the request. A stage's bug is a 500 Denial."""
    deadline = store.DEADLINE.set(time.monotonic() + STORE_BUDGET_SECONDS)
    try:
        await _run(stages, ctx)
    except Denial as d:
        await _decided(ctx, d)
        raise
    else:
        await _decided(ctx, None)
    finally:
        store.DEADLINE.reset(deadline)


async def _decided(ctx: GateContext, denial: Denial | None) -> None:
    """What wants to know the decision (a preview's report); a failure there is logged, never decides."""
    for hook in ctx.on_decided:
        try:
            await hook(ctx, denial)
        except Exception:  # noqa: BLE001 - reporting must not change what happens to the request
            log.exception("request %s: a decision hook failed", ctx.request_id)


async def _run(stages: Sequence[Stage], ctx: GateContext) -> None:
    for stage in stages:
        started = time.perf_counter()
        try:
            await stage(ctx)
        except Denial as d:
            d.stage = d.stage or stage.name
            raise
        except Exception as e:  # a bug in a gate denies; it never forwards
            log.exception("stage %s failed on request %s", stage.name, ctx.request_id)
            raise internal(stage.name, e) from e
        finally:
            ctx.stage_seconds[stage.name] = time.perf_counter() - started
