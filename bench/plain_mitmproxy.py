"""A bare mitmproxy reverse proxy configured like kubegate's (TLS, lazy connections, HTTP/1.1),
without kubegate's addon: the baseline that isolates what kubegate itself adds."""

from __future__ import annotations

import asyncio
import sys

from mitmproxy import http, options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master


class Ready:
    def running(self) -> None:
        proxy = ctx_master.addons.get("proxyserver")
        print(f"listening {proxy.listen_addrs()[0][1]}", flush=True)


async def main(upstream: str, ca_file: str, bundle: str) -> None:
    global ctx_master
    # The engine as kubegate runs it: without mitmproxy's per-message debug type check (kubegate's
    # mitm_patches, patch 6), so the ratio measures kubegate's own code, not a check it turned off.
    if "__post_init__" in vars(http.MessageData):
        http.MessageData.__post_init__ = lambda self: None  # type: ignore[method-assign]
    opts = options.Options(mode=[f"reverse:{upstream}@127.0.0.1:0"], confdir=bundle + ".confdir")
    ctx_master = Master(opts)
    ctx_master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                          Ready())
    opts.update(connection_strategy="lazy", certs=[f"*={bundle}"], http2=False, http3=False,
                ssl_verify_upstream_trusted_ca=ca_file)
    await ctx_master.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
