"""`herd status` / `herd app status` in an 80-column terminal: whole names, whole messages."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from herd_devkit.cli.app import render_status, status_rows


def app(namespace: str, name: str, message: str = "", sync: str = "Synced") -> dict[str, Any]:
    status: dict[str, Any] = {
        "sync": {"status": sync, "revision": "0123456789abcdef"},
        "health": {"status": "Healthy"},
        "operationState": {"phase": "Succeeded", "message": "ok"},
    }
    if message:
        status["conditions"] = [{"type": "ComparisonError", "message": message}]
    return {"metadata": {"namespace": namespace, "name": name}, "status": status}


def printed(width: int, items: list[dict[str, Any]]) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(
        render_status(status_rows("dev", items), width)
    )
    return out.getvalue().splitlines()


def test_names_and_messages_are_whole_in_80_columns() -> None:
    why = (
        "kustomization.yaml: not an object with apiVersion, kind and metadata.name: "
        "Kustomize is not supported in this version (the-part-that-explains-it)"
    )
    items = [
        app("herd-system", "herd-platform-openremote"),
        app("herd-system", "herd-api"),
        app("team-observability", "grafana-dashboards-shared", why, sync="Unknown"),
    ]
    lines = printed(80, items)
    assert all(len(line) <= 80 for line in lines), lines
    text = "\n".join(lines)
    for name in (
        "herd-system/herd-platform-openremote",
        "herd-system/herd-api",
        "team-observability/grafana-dashboards-shared",
    ):
        assert name in text  # on one line, never cut to "herd-syste…"
    assert "…" not in text
    # The message is printed whole under the table, wrapped: its end included.
    assert why in " ".join(line.strip() for line in lines)
    assert "revision" not in text  # dropped first when narrow
    assert "ok" not in text.split()  # a fine app's last operation says nothing here


def test_a_wide_terminal_shows_every_column() -> None:
    lines = printed(160, [app("herd-system", "herd-api")])
    header = next(line for line in lines if "application" in line)
    for column in ("cluster", "sync", "revision", "health", "last sync", "message"):
        assert column in header
    assert any("01234567" in line and "Succeeded" in line for line in lines)
