"""One reconciler module per kind; kopf decorators live in herd_operator.main."""
