"""Herd's signup API (FastAPI) and its queue workers."""
