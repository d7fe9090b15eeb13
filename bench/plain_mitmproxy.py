"""A bare mitmproxy reverse proxy configured like kubegate's (TLS, lazy connections, HTTP/1.1),
without kubegate's addon: the baseline that isolates what kubegate itself adds.

    plain_mitmproxy.py UPSTREAM CA_FILE CERT_BUNDLE [--hooks] [--http2]

`--hooks`: with an addon that has kubegate's hooks and does nothing in them (the engine's share of
kubegate's cost: what dispatching those hooks costs per flow). `--http2`: HTTP/2 offered to clients
(HTTP/1.1 to the upstream), to measure what HTTP/2 would change for a client before kubegate has it.
"""

from __future__ import annotations

import asyncio
import sys

from mitmproxy import http, options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master


class Hooks:
    """An addon with kubegate's hook shapes and none of its work: what the engine itself costs for
    dispatching those hooks (two of them coroutines, which the engine runs as tasks) per flow."""

    async def request(self, flow: http.HTTPFlow) -> None:
        flow.request.headers["Impersonate-User"] = "bench"

    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        pass


class Ready:
    def running(self) -> None:
        proxy = ctx_master.addons.get("proxyserver")
        print(f"listening {proxy.listen_addrs()[0][1]}", flush=True)


async def main(upstream: str, ca_file: str, bundle: str, hooks: bool, http2: bool) -> None:
    global ctx_master
    # The engine as kubegate runs it: without mitmproxy's per-message debug type check (kubegate's
    # mitm_patches, patch 6), so the ratio measures kubegate's own code, not a check it turned off.
    if "__post_init__" in vars(http.MessageData):
        http.MessageData.__post_init__ = lambda self: None  # type: ignore[method-assign]
    opts = options.Options(mode=[f"reverse:{upstream}@127.0.0.1:0"], confdir=bundle + ".confdir")
    ctx_master = Master(opts)
    ctx_master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                          Ready())
    if hooks:
        ctx_master.addons.add(Hooks())
    opts.update(connection_strategy="lazy", certs=[f"*={bundle}"], http2=http2, http3=False,
                ssl_verify_upstream_trusted_ca=ca_file)
    await ctx_master.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4], hooks="--hooks" in sys.argv[4:], http2="--http2" in sys.argv[4:]))
