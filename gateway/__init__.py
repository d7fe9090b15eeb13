"""The kubegate gateway: authenticate, classify, gate, forward under impersonation, audit.

The request path is the ordered list in `stages.default_stages`; `addon` is the thin adapter
that runs it inside mitmproxy, and `server` assembles and runs the whole process.
"""
