"""asyncio helpers shared by the servers kubegate runs on background loops (gateway, emulator)."""

from __future__ import annotations

import asyncio
import gc


async def abort_leftover_transports() -> None:
    """End every transport still bound to the running loop, so no socket outlives it.

    Servers leave some behind when they stop: TLS connections whose close needs more loop turns,
    keep-alive connections clients still hold, or a half-closed one (mitmproxy answered 413 while
    the client was still uploading)."""
    loop = asyncio.get_running_loop()
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Transport) and getattr(obj, "_loop", None) is loop:
            obj.abort()
    await asyncio.sleep(0.05)  # aborted transports finish closing on the next loop turns
