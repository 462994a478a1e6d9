"""`herd status` / `herd app status` in an 80-column terminal: whole names, whole messages."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from herd_devkit.cli.app import render_status, status_rows, status_view


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


def shown(width: int, items: list[dict[str, Any]], **filters: Any) -> tuple[str, bool]:
    out = io.StringIO()
    view, bad = status_view(status_rows("dev", items), width, **filters)
    Console(file=out, width=width, color_system=None).print(view)
    return out.getvalue(), bad


def test_a_thousand_apps_start_with_counts_and_show_only_what_is_not_fine() -> None:
    """Issue 33: with 1,000 Applications the view stays readable: counts first; then only the
    apps not Synced and Healthy, unless --all or a filter by state says otherwise."""
    items = [app("apps", f"a{i:04d}") for i in range(997)]
    items += [app("apps", f"bad{i}", "x.yaml: not YAML", sync="Unknown") for i in range(3)]
    text, bad = shown(80, items)
    first = text.splitlines()[0]
    assert first.startswith("1000 Applications: 997 Synced, 3 Unknown; 1000 Healthy"), first
    assert bad
    assert "apps/bad2" in text and "apps/a0001" not in text
    assert "--all" in text
    every, _ = shown(80, items, show_all=True)
    assert "apps/a0996" in every
    synced, _ = shown(80, items, sync="synced")
    assert "apps/a0500" in synced and "apps/bad0" not in synced
    unknown, _ = shown(80, items, sync="Unknown", health="Healthy")
    assert "apps/bad1" in unknown and "apps/a0000" not in unknown


def test_promotion_is_refused_while_dev_is_not_at_its_head() -> None:
    """Issue 35: each dev Application must be Synced and Healthy, and one that tracks the
    promoted branch at its head; the refusal names each and says why."""
    from herd_devkit.cli.app import promotion_blockers

    def at(name: str, revision: str, tracks: str = "dev", **status: Any) -> dict[str, Any]:
        item = app("herd-system", name)
        item["spec"] = {"source": {"targetRevision": tracks}}
        item["status"]["sync"]["revision"] = revision
        item["status"].update(status)
        return item

    head = "a" * 40
    fine = [at("api", head), at("other-repo", "b" * 40, tracks="main")]
    assert promotion_blockers(fine, "dev", head) == []
    behind = at("workers", "c" * 40)
    sick = at("openremote", head, health={"status": "Degraded", "message": "pod crashes"})
    broken = at("broken", head, sync={"status": "Unknown"})
    broken["status"]["conditions"] = [{"type": "ComparisonError", "message": "no such path"}]
    assert promotion_blockers([*fine, behind, sick, broken], "dev", head) == [
        "herd-system/broken: Unknown (no such path)",
        "herd-system/openremote: Degraded (pod crashes)",
        f"herd-system/workers: at cccccccc, dev is at {head[:8]}",
    ]
