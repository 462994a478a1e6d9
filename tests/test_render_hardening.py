"""Hostile git content through the real parts (issue 31): a repository holding ~120 KB of
nested `[` (a SIGSEGV of libyaml's composer, so of the whole operator, before) fails only its
own Application, with a ComparisonError naming the file, while the same operator process goes
on syncing another Application, and the next good commit of the hostile one."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from herd_devkit.local.gitrepo import Repo

from .applications import application, cm_data, comparison_error, configmap, synced_at
from .helpers import Custom, OperatorProcess, same_process, wait_for

pytestmark = pytest.mark.usefixtures("project")
DEEP = "[" * 60_000 + "]" * 60_000  # 120 KB; before the fix the operator died of SIGSEGV


def test_nested_brackets_fail_their_application_not_the_operator(
    objects: Custom,
    api: ApiClient,
    namespace: str,
    tmp_path: Path,
    live_operator: OperatorProcess,
) -> None:
    same_operator = same_process(live_operator)
    repo = Repo.create(tmp_path / "repo", {"README.md": "# apps\n"})
    repo.commit(
        "dev",
        "hostile and good",
        {
            "hostile/ok.yaml": configmap("hostile-ok", {"k": "v"}),
            "hostile/deep.yaml": DEEP,
            "good/a.yaml": configmap("good", {"k": "one"}),
        },
    )
    application(objects, "hostile", repo, "hostile", namespace)
    message = wait_for(lambda: comparison_error(objects, "hostile") or "", 60, "ComparisonError")
    assert "deep.yaml" in message and "nested deeper than 100 levels" in message, message
    # Nothing of the hostile revision is applied, and the operator process is the same one.
    assert cm_data(api, namespace, "hostile-ok") is None
    assert same_operator()

    # A good Application of the same repository syncs, by the same operator, after it.
    application(objects, "good", repo, "good", namespace)
    synced_at(objects, "good", repo.head("dev"))
    assert cm_data(api, namespace, "good") == {"k": "one"}
    # The hostile one is still refused (from the remembered failure, the same message)...
    assert comparison_error(objects, "hostile") == message
    # ...until a commit without the file: a new revision is rendered again.
    fixed = repo.commit("dev", "drop the hostile file", {"hostile/deep.yaml": "# gone\n"})
    synced_at(objects, "hostile", fixed)
    assert cm_data(api, namespace, "hostile-ok") == {"k": "v"}
    assert comparison_error(objects, "hostile") is None
    assert same_operator()
