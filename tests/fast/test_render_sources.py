"""Kustomize edits, directory globs, --set escaping and what a sparse checkout must add
(issue 34), as pure functions; and kustomize's output cap with the real kubectl."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from herd_devkit.local.tools import binary
from herd_operator.gitops import render
from herd_operator.gitops.engine import _remove_dead_scratch
from herd_operator.gitops.render import Limits, RenderError, Source


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("spec", "entry"),
    [
        ("nginx:1.2", {"name": "nginx", "newTag": "1.2"}),
        ("nginx=ghcr.io/x/nginx:2", {"name": "nginx", "newName": "ghcr.io/x/nginx", "newTag": "2"}),
        ("nginx@sha256:ab", {"name": "nginx", "digest": "sha256:ab"}),
        ("localhost:5000/app:3", {"name": "localhost:5000/app", "newTag": "3"}),
        ("app=registry:5000/app", {"name": "app", "newName": "registry:5000/app"}),
    ],
)
def test_image_edits_as_kustomize_edit_set_image(spec: str, entry: dict[str, str]) -> None:
    assert render.edit_kustomization({}, {"images": [spec]})["images"] == [entry]


def test_kustomize_edits_replace_merge_and_append() -> None:
    kust = {
        "namePrefix": "own-",
        "images": [{"name": "nginx", "newTag": "1"}],
        "commonLabels": {"a": "1"},
        "replicas": [{"name": "web", "count": 1}],
        "patches": [{"path": "p.yaml"}],
    }
    out = render.edit_kustomization(
        kust,
        {
            "namePrefix": "argo-",
            "images": ["nginx:2"],
            "commonLabels": {"b": "2"},
            "replicas": [{"name": "web", "count": 4}],
            "patches": [{"patch": "x"}],
        },
    )
    assert out["namePrefix"] == "argo-"
    assert out["images"] == [{"name": "nginx", "newTag": "2"}]
    assert out["commonLabels"] == {"a": "1", "b": "2"}
    assert out["replicas"] == [{"name": "web", "count": 4}]
    assert out["patches"] == [{"path": "p.yaml"}, {"patch": "x"}]
    assert kust["namePrefix"] == "own-"  # a copy
    with pytest.raises(RenderError, match="components not supported"):
        render.edit_kustomization({}, {"components": ["x"]})


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.yaml", "a.yaml", True),
        ("*.yaml", "sub/a.yaml", True),  # `*` crosses folders, as Argo's globs
        ("{a.yaml,b.yaml}", "b.yaml", True),
        ("{a.yaml,b.yaml}", "c.yaml", False),
        ("sub/{x,y{1,2}}.yaml", "sub/y2.yaml", True),
        ("{unclosed", "{unclosed", True),
    ],
)
def test_directory_globs(pattern: str, path: str, matches: bool) -> None:
    assert render.glob_match(pattern, path) is matches


def test_set_values_keep_commas_but_not_lists() -> None:
    assert render.parameter_args((("a", "x,y", False), ("b", "{1,2}", True))) == [
        "--set",
        "a=x\\,y",
        "--set-string",
        "b={1,2}",
    ]
    assert render.parameter_args((("a", "x\\,y", False),)) == ["--set", "a=x\\,y"]


def test_more_reads_names_bases_and_dependencies_outside_the_folder(tmp_path: Path) -> None:
    tree = write(
        tmp_path,
        {
            "overlay/kustomization.yaml": "resources: [../base, ../../../etc]\n"
            "patches: [{path: ../patches/p.yaml}]\n",
            "chart/Chart.yaml": json.dumps(
                {
                    "apiVersion": "v2",
                    "name": "c",
                    "version": "1",
                    "dependencies": [
                        {"name": "lib", "version": "1", "repository": "file://../lib"},
                        {"name": "r", "version": "1", "repository": "https://x"},
                    ],
                }
            ),
        },
    )
    # Discovery stops at the escaping base (the render refuses it, with its message).
    assert render.more_reads(tree, Source("overlay")) == ["base"]
    write(tree, {"overlay/kustomization.yaml": "resources: [../base]\n"})
    assert render.more_reads(tree, Source("overlay")) == ["base"]
    assert render.more_reads(tree, Source("chart")) == ["lib"]

    asked: list[tuple[str, ...]] = []

    def checkout(paths: tuple[str, ...]) -> Path:
        asked.append(paths)
        if "base" in paths:
            write(tree, {"base/kustomization.yaml": "resources: [../common]\n"})
        return tree

    render.checkout_reads(Source("overlay"), checkout)
    assert asked == [("overlay",), ("overlay", "base"), ("overlay", "base", "common")]


def test_kustomize_output_past_the_cap_stops_kustomize(tmp_path: Path) -> None:
    # A small kustomization whose patch multiplies: each of 100 ConfigMaps gets 20 KB.
    files = {
        f"k/cm{i}.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n"
        for i in range(100)
    }
    patch = json.dumps([{"op": "add", "path": "/data", "value": {"big": "x" * 20_000}}])
    files["k/kustomization.yaml"] = (
        f"resources: [{', '.join(f'cm{i}.yaml' for i in range(100))}]\n"
        f"patches:\n- target: {{kind: ConfigMap}}\n  patch: '{patch}'\n"
    )
    repo = write(tmp_path, files)
    kubectl = binary("kubectl")
    ok = render.render_here(repo, Source("k"), "ns", Path("helm"), kubectl=kubectl)
    assert len(ok) == 100 and ok[0]["data"]["big"] == "x" * 20_000
    with pytest.raises(RenderError, match=r"more than the limit of 500000 bytes \(kustomize"):
        render.render(
            repo, Source("k"), "ns", Path("helm"), limits=Limits(max_bytes=500_000), kubectl=kubectl
        )


def test_kustomize_runs_no_exec_function(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    repo = write(
        tmp_path,
        {
            "k/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [fn.yaml]\n",
            "k/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: e}\n",
            "k/fn.yaml": "apiVersion: example.com/v1\nkind: Pwn\nmetadata:\n  name: pwn\n"
            "  annotations:\n    config.kubernetes.io/function: |\n      exec:\n"
            f"        path: /usr/bin/touch\n        args: [{marker}]\n",
        },
    )
    with pytest.raises(RenderError, match="external plugins disabled"):
        render.render(repo, Source("k"), "ns", Path("helm"), kubectl=binary("kubectl"))
    assert not marker.exists()


def test_helm_settings_on_a_folder_that_is_no_chart_are_refused(tmp_path: Path) -> None:
    repo = write(tmp_path, {"m/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"})
    assert len(render.render_here(repo, Source("m"), "ns", Path("helm"))) == 1
    with pytest.raises(RenderError, match="is set but m is not a Helm chart"):
        render.render_here(repo, Source("m", parameters=(("a", "b", False),)), "ns", Path("h"))


def test_a_render_copies_only_what_it_reads_of_a_whole_tree(tmp_path: Path) -> None:
    """A kustomization edited by its Application and a chart with a file:// dependency are
    rendered on a copy: of the paths a sparse checkout would hold (the folder, its bases and
    dependencies, what links among them point at), not of a monorepo's whole shared tree."""
    tree = tmp_path / "tree"
    (tree / "base").mkdir(parents=True)
    (tree / "base" / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (tree / "base" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    (tree / "apps" / "a").mkdir(parents=True)
    (tree / "apps" / "a" / "kustomization.yaml").write_text("resources: [../../base]\n")
    (tree / "apps" / "a" / "shared.yaml").symlink_to("../../shared/x.yaml")
    (tree / "shared").mkdir()
    (tree / "shared" / "x.yaml").write_text("x: 1\n")
    (tree / "other").mkdir()
    (tree / "other" / "huge.yaml").write_text("y" * 100_000)
    dest = tmp_path / "copy"
    render.copy_reads(tree, Source("apps/a", kustomize={"namePrefix": "p-"}), dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir())
    assert files == [
        "apps/a/kustomization.yaml",
        "apps/a/shared.yaml",
        "base/cm.yaml",
        "base/kustomization.yaml",
        "shared/x.yaml",
    ]
    # And the render on that copy is the same as before: the edited kustomization builds.
    objects = render.render(
        tree, Source("apps/a", kustomize={"namePrefix": "p-"}), "n", binary("helm")
    )
    assert [o["metadata"]["name"] for o in objects] == ["p-c"]


def test_a_link_that_leaves_the_repository_once_its_dependency_moves_is_refused(
    tmp_path: Path,
) -> None:
    """A file:// dependency 26 folders down holds a link 26 `..` up and on to a path: inside
    the repository where it lies (dangling), but from charts/ of the copy it reaches the
    same path on the operator's disk (its ServiceAccount token, say)."""
    secret = tmp_path / "secret"
    secret.write_text("TOP-SECRET\n")
    lib = "d/" * 25 + "lib"
    repo = write(
        tmp_path / "repo",
        {
            "app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n"
            f"- {{name: lib, version: 0.1.0, repository: 'file://../{lib}'}}\n",
            f"{lib}/Chart.yaml": "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
            f"{lib}/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: l}\n"
            'data: {stolen: {{ .Files.Get "stolen" | quote }}}\n',
        },
    )
    (repo / lib / "stolen").symlink_to("../" * 26 + str(secret).lstrip("/"))
    with pytest.raises(RenderError, match=r"points outside the repository .*lib-dependency/st"):
        render.render(repo, Source("app", release_name="r"), "n", binary("helm"))


def test_a_dependency_name_that_is_a_path_is_refused_before_anything_is_copied(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    (victim / "charts").mkdir(parents=True)
    name = "../" * 30 + str(victim).lstrip("/") + "/charts/evil"
    repo = write(
        tmp_path / "repo",
        {
            "app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n"
            f"- {{name: {json.dumps(name)}, version: 0.1.0, repository: 'file://../lib'}}\n",
            "app/charts/README": "x\n",
            "lib/Chart.yaml": "apiVersion: v2\nname: evil\nversion: 0.1.0\n",
        },
    )
    with pytest.raises(RenderError, match=r"dependency name .* is not a chart name"):
        render.render(repo, Source("app", release_name="r"), "n", binary("helm"))
    assert list((victim / "charts").iterdir()) == []


def dependency_chart(tmp_path: Path, big: int = 0) -> Path:
    """A chart with a file:// dependency (copied into a scratch folder to render), which
    holds a file of `big` bytes."""
    repo = write(
        tmp_path / "repo",
        {
            "app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n"
            "- {name: lib, version: 0.1.0, repository: 'file://../lib'}\n",
            "lib/Chart.yaml": "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
            "lib/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: l}\n",
        },
    )
    (repo / "lib" / "big.bin").write_bytes(b"x" * big)
    return repo


def test_a_render_killed_at_its_deadline_leaves_no_scratch_behind(tmp_path: Path) -> None:
    """The render's copies are made in a folder its parent removes: a render killed at its
    deadline (its whole process group, helm too) cannot remove them itself, and each one
    left stayed on the pod's disk (its 64 Mi /tmp: the kubelet evicts the pod)."""
    repo = dependency_chart(tmp_path, big=64 * 1024)
    helm = tmp_path / "bin" / "helm"
    helm.parent.mkdir()
    seen = tmp_path / "chart-helm-was-given"
    helm.write_text(f'#!/bin/sh\necho "$3" > {seen}\nexec sleep 60\n')
    helm.chmod(0o755)
    scratch = tmp_path / "scratch"
    with pytest.raises(RenderError, match="took longer than 2s"):
        render.render(
            repo,
            Source("app", release_name="r"),
            "n",
            helm,
            limits=Limits(timeout=2),
            scratch=scratch,
        )
    copy = Path(seen.read_text().strip())  # the chart with its dependency, copied
    assert copy.is_relative_to(scratch) and copy.name == "app"
    assert list(scratch.iterdir()) == []
    # A render that works leaves nothing either, and the scratch holds its copies meanwhile.
    objects = render.render(
        repo, Source("app", release_name="r"), "n", binary("helm"), scratch=scratch
    )
    assert [o["metadata"]["name"] for o in objects] == ["l"]
    assert list(scratch.iterdir()) == []


def test_a_render_copies_at_most_its_budget_of_the_repository(tmp_path: Path) -> None:
    repo = dependency_chart(tmp_path, big=2 * 1024 * 1024)
    scratch = tmp_path / "scratch"
    with pytest.raises(RenderError, match="app: rendering it copies more than 1 MiB"):
        render.render(
            repo,
            Source("app", release_name="r"),
            "n",
            binary("helm"),
            limits=Limits(max_copy_bytes=1024 * 1024),
            scratch=scratch,
        )
    assert list(scratch.iterdir()) == []
    assert render.render(
        repo, Source("app", release_name="r"), "n", binary("helm"), scratch=scratch
    )


def test_an_engine_removes_the_scratch_of_processes_no_longer_alive(tmp_path: Path) -> None:
    """Its own folder (a restarted container may have the same pid) and dead processes'
    go; a live process's (another operator on the same cache, say) stays."""
    root = tmp_path / "render"
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        for pid in (dead.pid, alive.pid, 1234567890, 10**30):
            (root / str(pid) / "herd-render-x").mkdir(parents=True)
        mine = root / "424242424"
        (mine / "herd-render-y").mkdir(parents=True)
        _remove_dead_scratch(mine)
        assert sorted(p.name for p in root.iterdir()) == [str(alive.pid)]
    finally:
        alive.kill()
        alive.wait()
