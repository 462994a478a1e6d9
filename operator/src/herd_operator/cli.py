"""`herd operator run`: the Kopf operator against any kubeconfig or in-cluster."""

from __future__ import annotations

import asyncio
import logging

import kopf
import typer

from herd_operator.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="The Herd operator.")


@app.command()
def run(
    namespace: list[str] = typer.Option(
        [], "--namespace", "-n", help="Watch only these namespaces (default: all)"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    json_logs: bool = typer.Option(False, "--json-logs", help="Structured JSON logs"),
) -> None:
    """Reconcile Herd's custom resources until stopped (SIGTERM, Ctrl-C)."""
    from herd_operator import memory

    memory.limit_arenas()  # before any thread allocates
    import herd_operator.main  # registers the handlers

    s = get_settings()
    # Kopf's handler alone: the herd CLI's plain-text one would print every line twice, and
    # in plain text beside --json-logs (the chart's), which a log pipeline cannot parse.
    logging.getLogger().handlers.clear()
    kopf.configure(
        verbose=verbose, log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.PLAIN
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    namespaces = namespace or s.watch_namespaces
    # --namespace scopes all of the operator, not kopf's watches alone: the drift sweep and
    # the login read watch_namespaces (else it would repair other namespaces' objects).
    s.watch_namespaces = list(namespaces)
    asyncio.run(
        herd_operator.main.run(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=s.peering is None,
            peering_name=s.peering,
            liveness_endpoint=f"http://{s.listen_host}:{s.health_port}/healthz"
            if s.health_port
            else None,
        )
    )
