"""Thin, typed wrappers over the AWS APIs the handlers use: one module per service."""
