"""The clusters behind the gateway: where each one is and how it is trusted (`upstreams`), how an
allowed request is rewritten for it (`forwarding`: caller's credential out, the gateway's
credential and impersonation in), and the gateway's own client to it (`client`), which gates use
to look before they let a request through.
"""
