"""The proxy engine: the only package that imports mitmproxy.

Server assembly (`server.Gateway` wires settings, state, policies and stages together and runs
mitmproxy's bare Master), the one addon that runs the stage list on every flow (`addon`), the
narrow patches to mitmproxy's HTTP layer (`mitm_patches`) and the per-cluster TLS contexts handed
to mitmproxy (`upstream_tls`). Start with `addon.py`.
"""
