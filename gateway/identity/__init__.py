"""Who is calling: bearer-token authentication and token issuing (`authn`), the authenticated
`Identity` (`identity`), the gateway's own signing and serving keys (`keys`) and the kubeconfigs
that onboard users (`kubeconfig`).
"""
