"""TLS from the gateway to each cluster: that cluster's CA, name and client certificate only.

mitmproxy verifies upstreams with one global CA bundle; one bundle for several clusters would let
any cluster's CA vouch for another's apiserver. So each cluster gets its own pyOpenSSL context,
built once, and the addon hands it to mitmproxy in `tls_start_server`, before mitmproxy's own
TlsConfig (which leaves a connection alone once an addon has set it up).
"""

from __future__ import annotations

import ipaddress

from OpenSSL import SSL

from ..clusters.upstreams import Upstream

# X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS: the same host-name matching mitmproxy and browsers use.
_HOSTFLAGS = 0x4


def build_context(upstream: Upstream) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_verify(SSL.VERIFY_PEER, None)
    ctx.load_verify_locations(str(upstream.ca_file))
    if upstream.client_cert_file and upstream.client_key_file:
        ctx.use_certificate_chain_file(str(upstream.client_cert_file))
        ctx.use_privatekey_file(str(upstream.client_key_file))
        ctx.check_privatekey()
    return ctx


def connection(upstream: Upstream, alpn: list[bytes]) -> SSL.Connection:
    """A client-side TLS connection to `upstream`, verifying its certificate names server_name."""
    conn = SSL.Connection(upstream.tls_context)
    param = SSL._lib.SSL_get0_param(conn._ssl)
    SSL._lib.X509_VERIFY_PARAM_set_hostflags(param, _HOSTFLAGS)
    try:
        ip = ipaddress.ip_address(upstream.server_name).packed
    except ValueError:
        name = upstream.server_name.encode("idna")
        conn.set_tlsext_host_name(name)
        ok = SSL._lib.X509_VERIFY_PARAM_set1_host(param, name, len(name))
    else:
        ok = SSL._lib.X509_VERIFY_PARAM_set1_ip(param, ip, len(ip))
    if ok != 1:
        raise SSL.Error(f"cannot set up verification of {upstream.server_name!r}")
    if alpn:
        conn.set_alpn_protos(alpn)
    conn.set_connect_state()
    return conn
