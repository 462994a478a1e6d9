"""`herd api ...` and `herd worker ...`, plugged into the herd CLI by entry point."""

from __future__ import annotations

import typer

api_app = typer.Typer(no_args_is_help=True, help="The signup API.")
worker_app = typer.Typer(no_args_is_help=True, help="The queue workers.")
