"""Herd's operator, the `herd` CLI and the local platform it runs on."""

__version__ = "0.1.0"
