"""The local platform: an embedded Kubernetes control plane, a moto server, git fixtures.

Used by the tests and by `make up`; nothing here runs in a real cluster.
"""
