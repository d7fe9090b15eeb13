"""kubegate: a change risk-gating gateway in front of kube-apiserver."""

__version__ = "0.1.0"
