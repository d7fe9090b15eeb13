"""Audit: one audit.k8s.io/v1 Event per request, allowed or denied, written to a sink."""
