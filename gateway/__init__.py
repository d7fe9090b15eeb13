"""The kubegate gateway: authenticate, classify, gate, forward under impersonation, audit.

The request path is the ordered list in `stages.default_stages` (read it first); `engine.addon`
is the thin adapter that runs it inside mitmproxy, and `engine.server` assembles and runs the
whole process. The packages, by concern and in the order a request meets them: `request` (what
a request is), `identity` (who sends it), `authz` (may they), `gates` (is it safe now), `state`
(what replicas share), `clusters` (where it goes), `config` (settings and policy reload),
`engine` (mitmproxy). docs/architecture.md says what each may import.
"""
