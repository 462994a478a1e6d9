"""Thin, typed clients of the services the handlers call (AWS, OpenRemote): one per service."""
