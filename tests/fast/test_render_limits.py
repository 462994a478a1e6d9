"""Rendering hostile git content (issue 31): deep YAML, sizes checked while streaming, a child
process under limits, failed renders remembered per revision, object names in request paths."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.dynamic.resource import Resource

from herd_devkit.local.tools import binary
from herd_operator.gitops import rawapi, render
from herd_operator.gitops.kubeapply import Applier, ApplyError, resource_path, segment
from herd_operator.gitops.render import Limits, RenderError, RenderFailures, Source

MISSING_HELM = Path("/nonexistent/helm")
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n"
CHART = "apiVersion: v2\nname: c\nversion: 0.1.0\n"
# ~120 KB: libyaml's composer recurses once per level and overflows its C stack (SIGSEGV).
DEEP = {
    "flow": "[" * 120_000,
    "closed flow": "[" * 60_000 + "]" * 60_000,
    "block": "- " * 60_000 + "x\n",
    "mapping": "{a: " * 30_000 + "b" + "}" * 30_000,
}


def manifests(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / "m" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "m" / name).write_text(text)
    return tmp_path


def chart(tmp_path: Path, template: str, **files: str) -> Path:
    folder = tmp_path / "c"
    (folder / "templates").mkdir(parents=True)
    (folder / "Chart.yaml").write_text(CHART)
    (folder / "templates" / "t.yaml").write_text(template)
    for name, text in files.items():
        (folder / name).write_text(text)
    return tmp_path


def fake_helm(tmp_path: Path, script: str) -> Path:
    """A `helm` that is a shell script: it counts its runs in `runs` beside it."""
    helm = tmp_path / "bin" / "helm"
    helm.parent.mkdir()
    helm.write_text(f"#!/bin/sh\necho run >> {helm.parent}/runs\n{script}\n")
    helm.chmod(helm.stat().st_mode | stat.S_IXUSR)
    return helm


def runs(helm: Path) -> int:
    counter = helm.parent / "runs"
    return len(counter.read_text().splitlines()) if counter.exists() else 0


# -- N2: nesting depth ------------------------------------------------------------------------
@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_yaml_is_refused_before_it_is_composed(tmp_path: Path, text: str) -> None:
    repo = manifests(tmp_path, {"ok.yaml": CM.format("ok"), "deep.yaml": text})
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"deep\.yaml .*nested deeper than 100 levels"):
        render.render(repo, Source(path="m"), "ns", MISSING_HELM)
    assert time.monotonic() - started < 30  # libyaml's scan is quadratic in depth: cut short


def test_depth_is_capped_in_value_files_and_inline_values(tmp_path: Path) -> None:
    repo = chart(tmp_path, CM.format("x"), **{"deep.yaml": "a: " + DEEP["flow"]})
    helm = fake_helm(tmp_path, "exit 1")
    with pytest.raises(RenderError, match=r"value file deep\.yaml .*nested deeper than 100"):
        render.render(repo, Source(path="c", value_files=("deep.yaml",)), "ns", helm)
    with pytest.raises(RenderError, match=r"helm\.values .*nested deeper than 100"):
        render.render(repo, Source(path="c", values="a:\n  " + DEEP["block"]), "ns", helm)
    assert runs(helm) == 0


def test_depth_is_capped_in_helm_output(tmp_path: Path) -> None:
    text = "x: " + "[" * 200 + "]" * 200
    repo = chart(tmp_path, CM.format("x") + 'data:\n  {{ .Files.Get "deep.txt" }}\n')
    (repo / "c" / "deep.txt").write_text(text)
    with pytest.raises(RenderError, match=r"helm template c: .*nested deeper than 100"):
        render.render(repo, Source(path="c", release_name="r"), "ns", binary("helm"))
    # Below the cap it renders.
    (repo / "c" / "deep.txt").write_text("x: " + "[" * 20 + "]" * 20)
    [obj] = render.render(repo, Source(path="c", release_name="r"), "ns", binary("helm"))
    assert obj["data"]["x"] is not None


def test_a_crash_kills_only_its_render_and_names_the_file(tmp_path: Path) -> None:
    # Without the depth cap libyaml's composer overflows the C stack: the child process dies,
    # the caller gets a RenderError naming the file, and renders on.
    repo = manifests(tmp_path, {"deep.yaml": DEEP["block"]})
    with pytest.raises(
        RenderError, match=r"render process was killed by SIGSEGV while reading deep\.yaml"
    ):
        render.render(repo, Source(path="m"), "ns", MISSING_HELM, limits=Limits(max_depth=10**6))
    (repo / "m" / "deep.yaml").write_text(CM.format("fine"))
    assert [
        o["metadata"]["name"] for o in render.render(repo, Source("m"), "ns", MISSING_HELM)
    ] == ["fine"]


def test_pure_python_recursion_is_a_render_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without libyaml, PyYAML's composer recurses in Python: RecursionError, never a crash of
    # the caller's handler. The depth scan runs on the pure-Python parser too.
    monkeypatch.setattr(render, "_CLoader", None)
    text = "- " * 5_000 + "x\n"
    with pytest.raises(yaml.YAMLError, match="nested deeper than 100 levels"):
        list(render.load_all(text))
    repo = manifests(tmp_path, {"deep.yaml": text})
    with pytest.raises(RenderError, match=r"deep\.yaml is not valid YAML: nested too deeply"):
        render.render_here(repo, Source("m"), "ns", MISSING_HELM, limits=Limits(max_depth=10**6))
    with pytest.raises(RenderError, match="nested deeper than 100 levels"):
        render.render_here(repo, Source("m"), "ns", MISSING_HELM)


# -- N6: limits while streaming, the render under limits --------------------------------------
def test_manifests_have_a_node_cap(tmp_path: Path) -> None:
    items = "".join(f"  k{i}: v\n" for i in range(2_000))
    repo = manifests(tmp_path, {"big.yaml": CM.format("big") + "data:\n" + items})
    with pytest.raises(RenderError, match=r"big\.yaml .*more than 1000 nodes"):
        render.render(repo, Source("m"), "ns", MISSING_HELM, limits=Limits(max_nodes=1000))
    [obj] = render.render(repo, Source("m"), "ns", MISSING_HELM)
    assert len(obj["data"]) == 2_000


def test_objects_past_the_cap_are_not_built(tmp_path: Path) -> None:
    docs = "---\n".join(CM.format(f"c{i}") for i in range(50))
    repo = manifests(tmp_path, {"a.yaml": docs, "b.yaml": docs})
    with pytest.raises(RenderError, match=r"renders 6 objects, more than the limit of 5 "):
        render.render(repo, Source("m"), "ns", MISSING_HELM, limits=Limits(max_objects=5))


def test_value_file_sizes_are_checked_before_reading(tmp_path: Path) -> None:
    repo = chart(tmp_path, CM.format("x"), **{"big.yaml": "a: " + "x" * 5_000 + "\n"})
    helm = fake_helm(tmp_path, "exit 1")
    with pytest.raises(RenderError, match=r"value file big\.yaml: .*larger than the limit of 1000"):
        render.render(
            repo, Source("c", value_files=("big.yaml",)), "ns", helm, limits=Limits(max_bytes=1000)
        )
    assert runs(helm) == 0


def test_the_render_runs_under_a_memory_limit(tmp_path: Path) -> None:
    # 1.5 million nodes in one document: hundreds of MiB to compose, in the child only.
    repo = manifests(tmp_path, {"wide.yaml": "".join(f"- x{i}\n" for i in range(1_500_000))})
    with pytest.raises(RenderError, match=r"rendering m needs more than 100 MiB of memory"):
        render.render(repo, Source("m"), "ns", MISSING_HELM, limits=Limits(max_memory=100 * 2**20))


def test_helm_runs_under_the_memory_limit(tmp_path: Path) -> None:
    # Five lines of template, gigabytes of helm (issue 31).
    repo = chart(tmp_path, CM.format("x") + 'data: {k: {{ "x" | repeat 1000000000 | quote }}}\n')
    with pytest.raises(RenderError, match=r"helm template c failed: out of memory"):
        render.render(
            repo,
            Source("c", release_name="r"),
            "ns",
            binary("helm"),
            limits=Limits(max_memory=256 * 2**20),
        )


@pytest.mark.parametrize(
    "stderr",
    [
        "fatal error: runtime: out of memory",
        "fatal error: runtime: cannot allocate memory",  # as CI saw it
        "fatal error: out of memory allocating heap arena metadata",
        "fatal error: failed to reserve page summary memory",
        "runtime: out of memory: cannot allocate 1002438656-byte block\nfatal error: out of memory",
    ],
)
def test_any_go_out_of_memory_reads_as_the_memory_limit(tmp_path: Path, stderr: str) -> None:
    # Go's words for a refused allocation depend on where it was refused.
    repo = chart(tmp_path, CM.format("x"))
    helm = fake_helm(tmp_path, f"printf '{stderr}\\ngoroutine 1 [running]:\\n' >&2\nexit 2")
    with pytest.raises(RenderError) as err:
        render.render(repo, Source("c"), "ns", helm, limits=Limits(max_memory=256 * 2**20))
    assert str(err.value).endswith("helm template c failed: out of memory (more than 256 MiB)")


def test_another_go_fatal_error_is_its_line_without_the_dump(tmp_path: Path) -> None:
    repo = chart(tmp_path, CM.format("x"))
    helm = fake_helm(
        tmp_path, "printf 'fatal error: concurrent map writes\\n\\ngoroutine 1:\\n' >&2\nexit 2"
    )
    with pytest.raises(RenderError) as err:
        render.render(repo, Source("c"), "ns", helm)
    assert str(err.value).endswith("helm template c failed: fatal error: concurrent map writes")


def test_helm_inherits_the_limits_of_the_render(tmp_path: Path) -> None:
    repo = chart(tmp_path, CM.format("x"))
    # What helm reports of its own process: its data limit (KiB) and OOM score adjustment.
    helm = fake_helm(
        tmp_path,
        "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: x}\\n'"
        " && echo \"data: {data: '$(ulimit -d)', adj: '$(cat /proc/self/oom_score_adj)'}\"",
    )
    [obj] = render.render(repo, Source("c"), "ns", helm, limits=Limits(max_memory=300 * 2**20))
    assert obj["data"] == {"data": str(300 * 1024), "adj": "1000"}


def test_helm_output_is_capped_while_it_is_read(tmp_path: Path) -> None:
    repo = chart(tmp_path, CM.format("x"))
    # A helm that would write forever: stopped once past max_bytes.
    helm = fake_helm(tmp_path, "exec yes 'a: b'")
    with pytest.raises(RenderError, match=r"renders more than the limit of 65536 bytes \(helm was"):
        render.render(repo, Source("c"), "ns", helm, limits=Limits(max_bytes=65536))
    run = render._run(["yes"], b"", max_out=2**20, timeout=30)
    assert run.problem == "output" and run.returncode is not None and run.returncode < 0
    assert 2**20 < len(run.out) <= 2**20 + 65536


def test_a_render_past_its_deadline_is_killed_with_helm(tmp_path: Path) -> None:
    repo = chart(tmp_path, CM.format("x"))
    pid_file = tmp_path / "helm.pid"
    helm = fake_helm(tmp_path, f"sleep 600 & echo $! > {pid_file}; wait")
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"took longer than 3s|timed out"):
        render.render(repo, Source("c"), "ns", helm, limits=Limits(timeout=3))
    assert time.monotonic() - started < 20
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, f"helm's child {pid} outlived the render"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_failed_render_is_remembered_per_revision(tmp_path: Path) -> None:
    repo = chart(tmp_path, CM.format("x"))
    helm = fake_helm(tmp_path, "echo 'boom' >&2; exit 1")
    now = [0.0]
    failures = RenderFailures(size=2, ttl=60, clock=lambda: now[0])

    def attempt(namespace: str = "ns", source: Source | None = None) -> str:
        with pytest.raises(RenderError) as err:
            render.render(repo, source or Source("c"), namespace, helm, failures=failures)
        return str(err.value)

    first = attempt()
    assert "helm template c failed: boom" in first
    assert attempt() == first and runs(helm) == 1  # from memory, as at every poll
    attempt(source=Source("c", values="a: 1"))  # other source parameters: rendered
    assert runs(helm) == 2
    now[0] = 61  # past the ttl: rendered again (a timeout may have been a busy machine)
    attempt()
    assert runs(helm) == 3
    attempt("other")
    attempt("third")  # the oldest of three entries is dropped (size 2)
    assert runs(helm) == 5
    attempt()
    assert runs(helm) == 6
    # Without a memory of failures (devkit, tests), every render runs.
    with pytest.raises(RenderError):
        render.render(repo, Source("c"), "ns", helm)
    assert runs(helm) == 7


def test_timestamps_stay_strings_and_bytes_are_refused(tmp_path: Path) -> None:
    repo = manifests(
        tmp_path, {"a.yaml": CM.format("a") + "data:\n  d: 2024-01-01\n  t: 2001-12-14t21:59:43Z\n"}
    )
    [obj] = render.render(repo, Source("m"), "ns", MISSING_HELM)
    assert obj["data"] == {"d": "2024-01-01", "t": "2001-12-14t21:59:43Z"}
    (repo / "m" / "a.yaml").write_text(CM.format("a") + "data:\n  b: !!binary aGVsbG8=\n")
    with pytest.raises(RenderError, match="ConfigMap a holds a value JSON cannot carry"):
        render.render(repo, Source("m"), "ns", MISSING_HELM)


# -- N13: names in request paths --------------------------------------------------------------
BAD_NAMES = ["../secrets", "a/b", ".", "..", "%2F..%2Fsecrets", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_could_address_another_path_are_refused(name: str) -> None:
    with pytest.raises(ApplyError, match="invalid name"):
        segment(name)


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n])
def test_rendered_objects_with_such_names_are_refused(tmp_path: Path, name: str) -> None:
    repo = manifests(tmp_path, {"a.yaml": CM.format(f"'{name}'")})
    with pytest.raises(
        RenderError, match=re.escape("a.yaml: ConfigMap has an invalid metadata.name")
    ):
        render.render(repo, Source("m"), "ns", MISSING_HELM)
    repo = manifests(tmp_path, {"a.yaml": CM.format("ok") + f"  namespace: '{name}'\n"})
    with pytest.raises(RenderError, match=r"invalid metadata\.namespace"):
        render.render(repo, Source("m"), "ns", MISSING_HELM)


def configmaps(client: Any = None) -> Resource:
    return Resource(  # type: ignore[no-untyped-call]
        prefix="api",
        group="",
        api_version="v1",
        kind="ConfigMap",
        namespaced=True,
        name="configmaps",
        client=client,
    )


CONFIGMAPS = configmaps()


def test_names_are_escaped_in_request_paths() -> None:
    assert resource_path(CONFIGMAPS, "x?dryRun=All#y z", "ns") == (
        "/api/v1/namespaces/ns/configmaps/x%3FdryRun%3DAll%23y%20z"
    )
    assert resource_path(CONFIGMAPS, namespace="n s") == "/api/v1/namespaces/n%20s/configmaps"
    with pytest.raises(ApplyError, match="invalid namespace"):
        resource_path(CONFIGMAPS, "x", "../kube-system")


class FakeDynamic:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def delete(self, resource: Resource, name: str, namespace: str | None, **_: Any) -> None:
        # As DynamicClient.delete makes its path.
        self.paths.append(resource.path(name=name, namespace=namespace))  # type: ignore[no-untyped-call]


def test_the_applier_never_sends_an_unescaped_name(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(rawapi, "call", lambda _api, _method, path: sent.append(path))
    fake = FakeDynamic()
    applier = Applier.__new__(Applier)  # no discovery: its one kind is known
    applier.api = None  # type: ignore[assignment]
    applier.field_manager = "herd"
    applier._resources = {("v1", "ConfigMap"): configmaps(fake)}
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "", "namespace": "ns"},
    }
    for name in ["../../secrets/admin", "..", "a/b"]:
        obj["metadata"]["name"] = name
        with pytest.raises(ApplyError, match=re.escape(f"ConfigMap ns/{name}: invalid name")):
            applier.apply(obj)
        [answer] = applier.apply_each([obj], dry_run=True)
        assert isinstance(answer, ApplyError)
        with pytest.raises(ApplyError):
            applier.get("v1", "ConfigMap", name, "ns")
        with pytest.raises(ApplyError):
            applier.delete("v1", "ConfigMap", name, "ns")
    applier.get("v1", "ConfigMap", "a b?c", "ns")
    applier.delete("v1", "ConfigMap", "a b?c", "ns")
    assert sent == fake.paths == ["/api/v1/namespaces/ns/configmaps/a%20b%3Fc"]


def test_the_render_child_imports_no_settings() -> None:
    """Every render starts a Python child that imports render.py: what it imports is paid
    per Application per commit (pydantic-settings was 190 of 270 ms)."""
    code = "import sys; from herd_operator.gitops import render; print(sorted(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'pydantic_settings'" not in out and "'kubernetes'" not in out
