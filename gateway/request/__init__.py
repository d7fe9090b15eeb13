"""Reading a request: what it is (`info.RequestInfo`, classified the way kube-apiserver does) and
what its body says (`bodies`; `kubeproto` decodes Kubernetes protobuf). Pure functions, no I/O.
"""
