"""Sync history and rollback, the pure parts: history entries, when an auto-rollback is due,
and the revert of an app's files on top of a branch with a merge (a real local repository)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import typer

from herd_devkit.cli.app import _revert, history_rows, revert_to
from herd_devkit.local.gitrepo import Repo, git
from herd_operator.handlers.application import history, rollback

SOURCE = {"repoURL": "file:///r.git", "path": "m", "targetRevision": "dev"}


def test_history_one_entry_per_revision_with_result_and_health() -> None:
    h = history.record([], "a" * 40, "Failed", SOURCE, "t1", keep=10)
    h = history.record(h, "a" * 40, "Succeeded", SOURCE, "t2", keep=10)  # a retry: same entry
    assert [(e["id"], e["result"], e["deployedAt"]) for e in h] == [(0, "Succeeded", "t2")]
    assert h[0]["source"] == SOURCE
    h = history.observe(h, "a" * 40, "Progressing", "t3")
    h = history.observe(h, "a" * 40, "Healthy", "t4")
    assert history.observe(h, "a" * 40, "Healthy", "t5") is h  # unchanged: since stays
    assert history.observe(h, "b" * 40, "Degraded", "t5") is h  # not the last entry's
    assert (h[0]["healthAfter"], h[0]["healthSince"]) == ("Healthy", "t4")
    for n, rev in enumerate("bcd"):
        h = history.record(h, rev * 40, "Succeeded", SOURCE, f"u{n}", keep=2)
    assert [e["id"] for e in h] == [2, 3]


def test_limit_is_argos_default_capped_by_the_operator() -> None:
    assert history.limit({}, 50) == 10
    assert history.limit({"revisionHistoryLimit": 3}, 50) == 3
    assert history.limit({"revisionHistoryLimit": 30}, 20) == 20


def test_last_healthy_skips_failed_degraded_and_the_given_revision() -> None:
    h = [
        {"revision": "a", "result": "Succeeded", "healthAfter": "Healthy"},
        {"revision": "b", "healthAfter": "Healthy"},  # Argo's entry: a success
        {"revision": "c", "result": "Failed", "healthAfter": "Healthy"},
        {"revision": "d", "result": "Succeeded", "healthAfter": "Degraded"},
    ]
    assert (history.last_healthy(h) or {})["revision"] == "b"
    assert (history.last_healthy(h, other_than="b") or {})["revision"] == "a"
    assert history.last_healthy(h[3:]) is None


def spec(after: str | None = "5s", on: bool = True) -> dict[str, object]:
    policy = {"onDegraded": on, **({"after": after} if after else {})}
    return {"syncPolicy": {"automated": {"rollback": policy}}}


def test_auto_rollback_due_only_after_degraded_for_after_with_a_healthy_past() -> None:
    good = {"revision": "g", "result": "Succeeded", "healthAfter": "Healthy"}
    bad = {"revision": "r", "result": "Succeeded", "healthAfter": "Degraded"}
    bad["healthSince"] = "2026-01-01T00:00:00Z"
    status = {"history": [good, bad]}
    at = rollback.due_at(status, spec())
    assert at == dt.datetime(2026, 1, 1, 0, 0, 5, tzinfo=dt.UTC)
    assert rollback.due_at(status, spec(None)) == at + dt.timedelta(seconds=295)  # 5m
    assert rollback.due_at(status, spec(on=False)) is None
    assert rollback.due_at(status, {}) is None
    assert rollback.due_at({**status, "pinnedRevision": "g"}, spec()) is None  # pinned already
    # Nothing Healthy to go back to: due all the same (to say so), once.
    assert rollback.due_at({"history": [bad]}, spec()) == at
    said = {
        "type": "RolledBack",
        "reason": "NoHealthyRevision",
        "message": "not... r stayed Degraded ...",
    }
    assert rollback.due_at({"history": [bad], "conditions": [said]}, spec()) is None
    assert rollback.due_at({"history": [good, {**bad, "result": "Failed"}]}, spec()) is None
    assert rollback.due_at({"history": [good, {**bad, "healthAfter": "Healthy"}]}, spec()) is None
    assert rollback.due_at({**status, "sync": {"revision": "r"}}, spec()) == at
    assert rollback.due_at({**status, "sync": {"revision": "h"}}, spec()) is None  # moved on


def test_history_rows_newest_first_with_the_pin() -> None:
    obj = {
        "status": {
            "sync": {"revision": "g" * 40},
            "pinnedRevision": "g" * 40,
            "pinnedFrom": "r" * 40,
            "history": [
                {"id": 0, "revision": "g" * 40, "deployedAt": "t0", "healthAfter": "Healthy"},
                {"id": 1, "revision": "r" * 40, "result": "Succeeded", "healthAfter": "Degraded"},
            ],
        }
    }
    rows = history_rows(obj)
    assert rows[0][:2] == ("1", "r" * 8) and rows[0][5] == "rolled back from"
    assert rows[1][3] == "Succeeded" and "current" in rows[1][5] and "pinned" in rows[1][5]


def test_revert_restores_the_paths_on_top_of_a_merge(tmp_path: Path) -> None:
    repo = Repo.create(tmp_path / "r", {"README.md": "x\n"})
    good = repo.commit("dev", "good", {"m/a.yaml": "1", "values/v.yaml": "1", "other": "1"})
    repo.merge("dev", "main")
    repo.commit("main", "on main", {"m/b.yaml": "new", "m/a.yaml": "2"})
    repo.merge("main", "dev")
    head = repo.commit("dev", "later", {"values/v.yaml": "2", "other": "2"}, remove=("m/b.yaml",))
    repo.commit("dev", "again", {"m/c.yaml": "3"})
    work = repo.work
    assert revert_to(work, good, ("m", "values/v.yaml", "values/absent.yaml"))
    git("commit", "-q", "-m", "revert", cwd=work)
    assert git("rev-parse", "HEAD:m", cwd=work) == git("rev-parse", f"{good}:m", cwd=work)
    assert (work / "values/v.yaml").read_text() == "1"
    assert (work / "other").read_text() == "2"  # outside the app: untouched
    assert git("merge-base", "--is-ancestor", head, "HEAD", cwd=work) == ""  # nothing rewritten
    assert not revert_to(work, good, ("m",))  # already there


def test_rollback_refuses_what_is_no_commit_of_the_branch(tmp_path: Path) -> None:
    """An option in place of the revision, a commit of another branch, a name that is none:
    refused before anything is committed or pushed."""
    repo = Repo.create(tmp_path / "r", {"README.md": "x\n"})
    other = repo.commit("main", "elsewhere", {"m/a.yaml": "main"})
    head = repo.commit("dev", "dev", {"m/a.yaml": "dev"})
    for revision in ("--output=/tmp/owned", "--git-dir", other, "no-such-ref"):
        keep = tmp_path / revision.strip("-/").replace("/", "_")
        keep.mkdir()
        with pytest.raises(typer.Exit) as err:
            _revert("a", repo.url, "dev", ("m",), {}, revision, keep, False)
        assert err.value.exit_code == 2
    assert repo.head("dev") == head
    assert not Path("/tmp/owned").exists()


class _Obj:
    def __init__(self, status: dict[str, object]) -> None:
        self.status = status
        self.spec = {**spec(), "source": SOURCE}
        self.events: list[tuple[str, str]] = []

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, message))


class _Engine:
    def head(self, app: object) -> str:
        return "r" * 40


def test_no_healthy_revision_is_said_once_and_kept_while_degraded() -> None:
    bad = {
        "revision": "r" * 40,
        "result": "Succeeded",
        "healthAfter": "Degraded",
        "healthSince": "2026-01-01T00:00:00Z",
    }
    obj = _Obj({"history": [bad], "health": {"message": "deadline exceeded"}})
    app = object()
    now = dt.datetime(2026, 1, 1, 0, 1, tzinfo=dt.UTC)
    t = rollback.target(obj, _Engine(), app, now)  # type: ignore[arg-type]
    assert t.app is app and t.status == {}
    [c] = t.conditions
    assert (c["status"], c["reason"]) == ("False", "NoHealthyRevision")
    assert "r" * 8 in c["message"] and "deadline exceeded" in c["message"]
    assert [r for r, _ in obj.events] == ["RolledBack"]
    obj.status["conditions"] = t.conditions
    again = rollback.target(obj, _Engine(), app, now)  # type: ignore[arg-type]
    assert again.conditions == t.conditions and len(obj.events) == 1  # kept, said once
    obj.status["history"] = [{**bad, "healthAfter": "Healthy"}]
    assert rollback.target(obj, _Engine(), app, now).conditions == []  # type: ignore[arg-type]
