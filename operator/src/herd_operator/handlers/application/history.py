"""An Application's sync history (status.history): Argo's entries (id, revision, deployedAt,
source), each with Herd's `result` and the health that sync left (`healthAfter`, since
`healthSince`), which `herd app history` lists and rollback reads. Pure functions."""

from __future__ import annotations

from typing import Any

from herd_operator.gitops import health

DEFAULT_LIMIT = 10  # Argo's default revisionHistoryLimit

Entry = dict[str, Any]


def limit(spec: dict[str, Any], cap: int) -> int:
    """Entries kept: the Application's revisionHistoryLimit (Argo's, default 10), never more
    than the operator's cap (HERD_HISTORY_LIMIT)."""
    return max(1, min(int(spec.get("revisionHistoryLimit") or DEFAULT_LIMIT), cap))


def record(
    history: list[Entry], revision: str, result: str, source: dict[str, Any], now: str, keep: int
) -> list[Entry]:
    """The history after a sync of `revision` ended with `result` (Succeeded or Failed). A
    sync of the revision the last entry has (a retry, a self-heal) updates that entry's
    result; another revision is a new entry."""
    out = [dict(e) for e in history]
    if out and out[-1].get("revision") == revision:
        if out[-1].get("result") != result:
            out[-1].update(result=result, deployedAt=now)
        return out[-keep:]
    out.append(
        {
            "id": (int(out[-1].get("id", 0)) + 1) if out else 0,
            "revision": revision,
            "deployedAt": now,
            "source": {
                "repoURL": source["repoURL"],
                "path": source.get("path"),
                "targetRevision": source.get("targetRevision"),
            },
            "result": result,
        }
    )
    return out[-keep:]


def observe(history: list[Entry], revision: str, status: str, now: str) -> list[Entry]:
    """The health the cluster shows now, recorded on the last entry while it is the revision
    compared: the health its sync left (healthSince: when it last changed)."""
    if not history or history[-1].get("revision") != revision:
        return history
    last = history[-1]
    if last.get("healthAfter") == status:
        return history
    return [*history[:-1], {**last, "healthAfter": status, "healthSince": now}]


def last_healthy(history: list[Entry], other_than: str | None = None) -> Entry | None:
    """The newest entry whose sync succeeded and left the Application Healthy (of a revision
    other than `other_than`)."""
    for entry in reversed(history):
        if (
            entry.get("revision") != other_than
            and entry.get("result", "Succeeded") == "Succeeded"
            and entry.get("healthAfter") == health.HEALTHY
        ):
            return entry
    return None
