"""The state store every replica shares: the `StateStore` interface and its in-memory backend
(`store`), and its Redis backend (`redis_store`). It knows buckets, breakers and records, no gate.
"""
