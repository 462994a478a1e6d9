"""Render an Application's source folder into Kubernetes objects.

A folder with a Chart.yaml is a Helm chart, rendered with `helm template` (value files merged
with Helm's semantics: maps merge, lists and scalars are replaced); any other folder is plain
manifests (*.yaml, *.yml, *.json at its top level). Paths never leave the repository.

Everything here comes from git, so it is hostile until checked. render() runs the whole render
(YAML parsing and helm) in a child process under a memory limit (RLIMIT_DATA, inherited by
helm) and a deadline, so a hostile source can kill at most its own render, never the operator.
Inside it, every limit is checked while streaming, before anything is built: file sizes before
reading, helm's output while reading it (helm is killed past the cap), and each YAML text's
event stream (nesting depth, node count, aliases) before it is composed. YAML aliases are
refused in git's own files (a few hundred bytes of nested aliases expand to gigabytes), and
every document must be a mapping with apiVersion, kind and a metadata.name that is a valid path
segment. A failed render of a commit may be remembered (RenderFailures) so that a broken or
hostile revision costs one render, not one per poll.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
import hashlib
import json
import logging
import os
import posixpath
import re
import resource
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from herd_operator.gitops import forkserver
from herd_operator.gitops.git import escaping_symlinks

MiB = 1024 * 1024
log = logging.getLogger(__name__)


class RenderError(Exception):
    """The source does not render: the message says where and why."""


@dataclass(frozen=True)
class Limits:
    """Caps on what one Application may render (settings app_max_rendered_*)."""

    max_bytes: int = 16 * MiB  # files read (manifests, value files), and helm's output
    max_objects: int = 2000
    max_nodes: int = 2_000_000  # YAML nodes of one text, aliases expanded
    # libyaml's composer recurses once per nesting level: 120 KB of `[` overflow its C stack.
    max_depth: int = 100
    # Data segment of the render process, and of helm's; below the operator pod's limit.
    max_memory: int = 512 * MiB
    timeout: float = 120  # the whole render, helm included
    # What a render copies of its checkout into its scratch folder (a kustomization edited on
    # a copy, a chart's file:// dependencies vendored): a pushed file or dependency chain
    # never fills the disk under the operator.
    max_copy_bytes: int = 128 * MiB


# -- YAML: scanned as events first, composed only once depth, size and aliases passed -------
def _plain_timestamps(loader: Any) -> Any:
    # Timestamps stay the strings they were written as (as Kubernetes' own YAML decoding
    # keeps them): a datetime could not be sent as JSON.
    loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
    return loader


@_plain_timestamps
class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases before they are expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


@_plain_timestamps
class _CountingLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting the nodes a document expands to (each alias counts its
    anchor's whole subtree) and refusing past a cap, before anything is expanded. For Helm
    output, where anchors are legitimate (CRD schemas use them)."""

    max_nodes = 1_000_000

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._weights: dict[int, int] = {}
        self._total = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.check_event(yaml.AliasEvent)
        node = super().compose_node(parent, index)
        if not alias:  # an alias is its anchor's node, weighed already
            children: list[Any] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            self._weights[id(node)] = 1 + sum(self._weights.get(id(c), 1) for c in children)
        if parent is None:  # a document's root: what constructing it would expand to
            self._total += self._weights.get(id(node), 1)
            if self._total > self.max_nodes:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"YAML expands to more than {self.max_nodes} nodes",
                    getattr(node, "start_mark", None),
                )
        return node


# libyaml, when PyYAML has it: six times faster than the pure-Python loaders above, which a
# 2,000-object render spent most of its parse time in. Its events are read first (depth,
# aliases, node count) and the documents built only from text that passed.
_CLoader: Any = None
if getattr(yaml, "CSafeLoader", None) is not None:

    @_plain_timestamps
    class _CSafeLoader(yaml.CSafeLoader):
        pass

    _CLoader = _CSafeLoader


def _scan(text: str, aliases_allowed: bool, max_nodes: int, max_depth: int) -> tuple[bool, int]:
    """Whether `text` has aliases, and its node count, from its events; stops at the first
    level deeper than `max_depth` or node past `max_nodes` (libyaml's scanner slows with the
    nesting depth, so nothing deeper is ever read)."""
    nodes, depth, aliases = 0, 0, False
    for event in yaml.parse(text, Loader=_CLoader or yaml.SafeLoader):
        mark: Any = event.start_mark  # libyaml's own Mark class, or PyYAML's
        if isinstance(event, yaml.AliasEvent):
            if not aliases_allowed:
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases (*name) are not allowed", mark
                )
            aliases = True
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
            if nodes > max_nodes:
                raise yaml.composer.ComposerError(
                    None, None, f"YAML expands to more than {max_nodes} nodes", mark
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    raise yaml.composer.ComposerError(
                        None, None, f"YAML is nested deeper than {max_depth} levels", mark
                    )
    return aliases, nodes


def load_all(
    text: str, max_nodes: int = Limits.max_nodes, max_depth: int = Limits.max_depth
) -> Iterator[Any]:
    """Every document of `text`, refusing aliases (yaml.YAMLError otherwise)."""
    _scan(text, aliases_allowed=False, max_nodes=max_nodes, max_depth=max_depth)
    return iter(yaml.load_all(text, Loader=_CLoader or _NoAliasLoader))


def load_all_capped(text: str, max_nodes: int, max_depth: int = Limits.max_depth) -> Iterator[Any]:
    """Every document of `text`; aliases allowed while the expansion stays under `max_nodes`."""
    aliases, _nodes = _scan(text, aliases_allowed=True, max_nodes=max_nodes, max_depth=max_depth)
    if _CLoader is not None and not aliases:  # nothing expands: the scan counted it all
        return iter(yaml.load_all(text, Loader=_CLoader))
    loader = type("_Capped", (_CountingLoader,), {"max_nodes": max_nodes})
    return iter(yaml.load_all(text, Loader=loader))


def load(text: str, max_nodes: int = Limits.max_nodes, max_depth: int = Limits.max_depth) -> Any:
    _scan(text, aliases_allowed=False, max_nodes=max_nodes, max_depth=max_depth)
    return yaml.load(text, Loader=_CLoader or _NoAliasLoader)


@dataclass(frozen=True)
class Source:
    path: str
    value_files: tuple[str, ...] = ()
    values: str | None = None
    values_object: Mapping[str, Any] = field(default_factory=dict)
    release_name: str = ""
    # helm.parameters: (name, value, forceString) each, as --set / --set-string.
    parameters: tuple[tuple[str, str, bool], ...] = ()
    # spec.source.kustomize and spec.source.directory as written (None: not set).
    kustomize: Mapping[str, Any] | None = None
    directory: Mapping[str, Any] | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], name: str) -> Source:
        src = spec.get("source") or {}
        helm = src.get("helm") or {}
        return cls(
            path=src.get("path", "."),
            value_files=tuple(helm.get("valueFiles") or ()),
            values=helm.get("values"),
            values_object=helm.get("valuesObject") or {},
            release_name=helm.get("releaseName") or name,
            parameters=tuple(
                (str(p["name"]), str(p.get("value", "")), bool(p.get("forceString")))
                for p in helm.get("parameters") or ()
            ),
            kustomize=src.get("kustomize"),
            directory=src.get("directory"),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Source:
        """The Source dataclasses.asdict() gave, back from JSON (lists to tuples)."""
        return cls(
            **{
                **data,
                "value_files": tuple(data.get("value_files") or ()),
                "parameters": tuple(tuple(p) for p in data.get("parameters") or ()),
            }
        )

    def reads(self) -> tuple[str, ...]:
        """The repository paths rendering reads: the folder and the value files (relative
        to it, as Argo reads them), for a checkout of these alone (symlinks followed)."""
        return (self.path, *(posixpath.join(self.path, f) for f in self.value_files))


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's value merge: nested maps merge, everything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def inside(root: Path, relative: str | Path, base: Path | None = None) -> Path:
    path = ((base or root) / relative).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise RenderError(f"{relative} leaves the repository")
    return path


# -- failed renders, remembered per revision ----------------------------------------------
class RenderFailures:
    """Failed renders of checkouts that never change (one tree per commit), remembered for
    `ttl` seconds: a broken or hostile revision costs one render, not one per poll. The ttl
    retries what may have failed because the machine was busy (a timeout)."""

    def __init__(
        self, size: int = 256, ttl: float = 600, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size, self.ttl, self.clock = size, ttl, clock
        self._failed: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._guard = threading.Lock()

    @staticmethod
    def key(
        repo: Path,
        source: Source,
        namespace: str,
        helm: Path,
        include_crds: bool,
        limits: Limits,
        kubectl: Path | None = None,
    ) -> str:
        parts = [
            str(repo.resolve()),
            dataclasses.asdict(source),
            namespace,
            str(helm),
            include_crds,
            dataclasses.asdict(limits),
            str(kubectl),
        ]
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._guard:
            found = self._failed.get(key)
            if found is None:
                return None
            if found[0] <= self.clock():
                del self._failed[key]
                return None
            self._failed.move_to_end(key)
            return found[1]

    def put(self, key: str, message: str) -> None:
        with self._guard:
            self._failed[key] = (self.clock() + self.ttl, message)
            self._failed.move_to_end(key)
            while len(self._failed) > self.size:
                self._failed.popitem(last=False)


# -- rendering in a child process ---------------------------------------------------------
_PROGRESS = "herd-render-progress: "  # the child's stderr line naming what it reads now
_STDERR_CAP = 64 * 1024
# Renders are forked from one process that has imported this module (started on first use).
_FORKS = forkserver.ForkServer("herd_operator.gitops.render:_child")


def render(
    repo: Path,
    source: Source,
    namespace: str,
    helm: Path,
    include_crds: bool = True,
    limits: Limits = Limits(),
    failures: RenderFailures | None = None,
    kubectl: Path | None = None,
    scratch: Path | None = None,
) -> list[dict[str, Any]]:
    """The objects `source` renders to, rendered in a child process (render_here there).
    With `failures`, `repo` must be a checkout that never changes (one per commit).
    `kubectl` builds kustomizations (default: the operator's HERD_KUBECTL, else on PATH).
    The render's scratch folder is made in `scratch` (default: the system's temporary
    folder)."""
    kubectl = kubectl or find_kubectl()
    key = (
        failures.key(repo, source, namespace, helm, include_crds, limits, kubectl)
        if failures
        else ""
    )
    if failures is not None:
        remembered = failures.get(key)
        if remembered is not None:
            raise RenderError(remembered)
    try:
        with _scratch_folder(scratch) as folder:
            objects = _render_in_child(
                folder, repo, source, namespace, helm, include_crds, limits, kubectl
            )
    except RenderError as err:
        if failures is not None:
            failures.put(key, str(err))
        raise
    if len(objects) > limits.max_objects:
        raise RenderError(f"{source.path} renders more than {limits.max_objects} objects")
    for obj in objects:
        check_object(obj, source.path)
    return objects


@contextlib.contextmanager
def _scratch_folder(root: Path | None) -> Iterator[str]:
    """A render's scratch folder, in `root`. Made and removed here, not in the child: a
    child killed at its deadline (SIGKILL, its whole group) cannot clean up, and each copy
    it left would stay on the pod's disk."""
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="herd-render-", dir=root)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _render_in_child(
    scratch: str,
    repo: Path,
    source: Source,
    namespace: str,
    helm: Path,
    include_crds: bool,
    limits: Limits,
    kubectl: Path | None,
) -> list[dict[str, Any]]:
    request = {
        "scratch": scratch,
        "repo": str(repo),
        "source": dataclasses.asdict(source),
        "namespace": namespace,
        "helm": str(helm),
        "kubectl": str(kubectl) if kubectl else None,
        "include_crds": include_crds,
        "limits": dataclasses.asdict(limits),
    }
    # JSON of what at most max_bytes of YAML holds: quotes and nulls take a few times more
    # than their YAML; aliases in Helm output are capped by the node count.
    cap = 4 * limits.max_bytes + MiB
    command = [
        sys.executable,
        "-P",
        "-c",
        "from herd_operator.gitops import render; render._child()",
    ]
    try:
        # The same child, forked from a process that has imported it; should that process
        # die meanwhile, the render is not failed for it: run again, started afresh.
        run = _run(
            command,
            json.dumps(request).encode(),
            max_out=cap,
            timeout=limits.timeout,
            own_group=True,  # helm too is killed with it
            forks=_FORKS,
        )
        if run.problem == "lost":
            run = _run(command, json.dumps(request).encode(), cap, limits.timeout, own_group=True)
    except OSError as err:
        raise RenderError(f"cannot start the render of {source.path}: {err}") from err
    if run.problem == "timeout":
        raise RenderError(f"rendering {source.path} took longer than {limits.timeout:g}s")
    if run.problem == "output":
        raise RenderError(f"{source.path} renders more than {cap} bytes (as JSON)")
    answer: Any = None
    with contextlib.suppress(ValueError, RecursionError):
        answer = json.loads(run.out) if run.out else None
    if isinstance(answer, dict):
        if isinstance(answer.get("error"), str):
            raise RenderError(answer["error"])
        objects = answer.get("objects")
        if run.returncode == 0 and isinstance(objects, list):
            return objects
    # The child died: name what it was reading.
    lines = run.err.decode(errors="replace").splitlines()
    reading = next((ln[len(_PROGRESS) :] for ln in reversed(lines) if ln.startswith(_PROGRESS)), "")
    other = [ln for ln in lines if ln.strip() and not ln.startswith(_PROGRESS)]
    rc = run.returncode or 0
    how = f"was killed by {_signal_name(-rc)}" if rc < 0 else f"exited with {rc}"
    raise RenderError(
        f"rendering {source.path} failed: the render process {how}"
        + (f" while reading {reading}" if reading else "")
        + (f" ({other[-1][:300]})" if other else "")
    )


def _child() -> None:
    """The child process of render(): a request (JSON) on stdin, {"objects": [...]} or
    {"error": "..."} on stdout."""
    global _progress
    request = json.loads(sys.stdin.buffer.read())
    limits = Limits(**request["limits"])
    # Every temporary folder of the render inside the one its parent removes.
    tempfile.tempdir = request["scratch"]
    source = Source.from_json(request["source"])
    # No core dump of a crash; the data limit bounds this process and helm (inherited).
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Should the pod's memory run out all the same, the kernel kills the render (and helm,
    # which inherits this), not the operator.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as adj:
        adj.write("1000")
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    memory = limits.max_memory if hard == resource.RLIM_INFINITY else min(hard, limits.max_memory)
    resource.setrlimit(resource.RLIMIT_DATA, (memory, hard))
    _progress = _report_progress
    out_of_memory = f"rendering {source.path} needs more than {memory // MiB} MiB of memory"
    failed: str | None = None
    try:
        payload = _child_render(request, source, limits)
    except RenderError as err:
        failed = str(err)
    except MemoryError:
        failed = out_of_memory
    if failed is not None:  # outside the except: what the render held is freed by now
        payload = json.dumps({"error": failed}).encode()
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()


def _child_render(request: dict[str, Any], source: Source, limits: Limits) -> bytes:
    objects = render_here(
        Path(request["repo"]),
        source,
        request["namespace"],
        Path(request["helm"]),
        request["include_crds"],
        limits,
        kubectl=Path(request["kubectl"]) if request.get("kubectl") else None,
    )
    parts = []
    for obj in objects:
        try:
            parts.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())
        except (TypeError, ValueError) as err:
            raise RenderError(
                f"{source.path}: {describe(obj)} holds a value JSON cannot carry "
                f"(a YAML !!binary or !!set?): {err}"
            ) from err
    return b'{"objects":[' + b",".join(parts) + b"]}"


_GO_OOM = ("out of memory", "cannot allocate memory", "failed to reserve page summary memory")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _report_progress(what: str) -> None:
    sys.stderr.write(f"{_PROGRESS}{what}\n")
    sys.stderr.flush()


_progress: Callable[[str], None] = lambda _what: None  # noqa: E731 - set in the child


@dataclass
class _Run:
    returncode: int | None
    out: bytearray  # not copied: up to 4 x max_bytes
    err: bytes
    problem: str | None  # "timeout"; "output" when stdout passed max_out; "lost" (fork server)


def _run(
    command: list[str],
    stdin: bytes,
    max_out: int,
    timeout: float,
    own_group: bool = False,
    max_err: int = _STDERR_CAP,
    env: Mapping[str, str] | None = None,
    forks: forkserver.ForkServer | None = None,
) -> _Run:
    """Run `command` with `stdin`, reading its stdout up to `max_out` bytes and killing it
    past that or past `timeout` (its process group with `own_group`): nothing it writes is
    buffered past the cap. Stderr is kept up to `max_err` bytes. With `forks`, the command
    is that server's child instead (the same program, forked: `command` if it cannot)."""
    proc: subprocess.Popen[bytes] | forkserver.Forked | None = None
    if forks is not None:
        try:
            proc = forks.spawn()
        except OSError as unavailable:
            log.warning("fork server unavailable, starting a process instead: %s", unavailable)
    if proc is None:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=own_group,
            env=None if env is None else dict(env),
        )
    assert proc.stdin and proc.stdout and proc.stderr
    out, err = bytearray(), bytearray()
    problem: str | None = None
    deadline = time.monotonic() + timeout
    pending, offset = memoryview(stdin), 0
    try:
        with selectors.DefaultSelector() as sel:
            if pending:
                sel.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            while sel.get_map() and problem is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    problem = "timeout"
                    break
                for key, _ in sel.select(left):
                    if key.fileobj is proc.stdin:
                        try:
                            offset += os.write(key.fd, pending[offset : offset + select.PIPE_BUF])
                        except BrokenPipeError:
                            offset = len(pending)
                        if offset >= len(pending):
                            sel.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    if key.fileobj is proc.stdout:
                        out += chunk
                        if len(out) > max_out:
                            problem = "output"
                            break
                    else:
                        err += chunk[: max(0, max_err - len(err))]
        if problem is None:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problem = "timeout"
    finally:
        if problem is not None or proc.poll() is None:
            _kill(proc, own_group)
        proc.wait()
        if own_group and proc.returncode != 0:
            _kill(proc, own_group)  # what it started and left behind (helm)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
        if isinstance(proc, forkserver.Forked):
            proc.release()
            if proc.lost and problem is None:
                problem = "lost"  # the fork server died: nothing is known of this run
    return _Run(proc.returncode, out, bytes(err), problem)


def _kill(proc: subprocess.Popen[bytes] | forkserver.Forked, own_group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if own_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()


# -- the render itself (in the child) -------------------------------------------------------
def render_here(
    repo: Path,
    source: Source,
    namespace: str,
    helm: Path,
    include_crds: bool = True,
    limits: Limits = Limits(),
    kubectl: Path | None = None,
) -> list[dict[str, Any]]:
    """render() in this process: for the child process, and for tests."""
    folder = inside(repo, source.path)
    if not folder.is_dir():
        raise RenderError(f"path {source.path} is not a folder at this revision")
    kind = source_type(folder, source)
    if kind != "helm" and (
        source.value_files or source.values or source.values_object or source.parameters
    ):
        raise RenderError(
            f"spec.source.helm is set but {source.path} is not a Helm chart (no Chart.yaml)"
        )
    try:
        if kind == "helm":
            objects = _render_chart(repo, folder, source, namespace, helm, include_crds, limits)
        elif kind == "kustomize":
            objects = _render_kustomize(repo, folder, source, kubectl, limits)
        else:
            objects = _load_manifests(folder, source.path, limits, source.directory or {})
    except RecursionError as err:  # pure-Python PyYAML, should a depth limit let it through
        raise RenderError(f"{source.path}: YAML is nested too deeply") from err
    if len(objects) > limits.max_objects:
        raise RenderError(
            f"{source.path} renders {len(objects)} objects, more than the limit of "
            f"{limits.max_objects}"
        )
    for obj in objects:
        check_object(obj, source.path)
    return objects


def describe(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"


def valid_segment(name: Any) -> bool:
    """A name that is one path segment of a request (apimachinery's IsValidPathSegmentName)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "%" not in name
    )


def check_object(obj: Any, where: str) -> None:
    """A Kubernetes object: a mapping with apiVersion, kind and metadata.name (strings; the
    name, and a namespace if given, valid as a path segment). A generateName stands for the
    name (a hook's: the engine refuses it on any other object)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    named = isinstance(meta, dict) and any(
        isinstance(meta.get(k), str) and meta[k] for k in ("name", "generateName")
    )
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("apiVersion"), str)
        or not obj["apiVersion"]
        or not isinstance(obj.get("kind"), str)
        or not obj["kind"]
        or not isinstance(meta, dict)
        or not named
    ):
        raise RenderError(
            f"{where}: not an object with apiVersion, kind and metadata.name: "
            f"{json.dumps(obj, default=str)[:200]}"
        )
    for field_ in ("name", "generateName", "namespace"):
        if (field_ in meta and meta[field_] not in (None, "")) and not valid_segment(meta[field_]):
            raise RenderError(
                f"{where}: {obj['kind']} has an invalid metadata.{field_} "
                f"{json.dumps(meta[field_], default=str)[:100]} (no '/', '%', '.' or '..')"
            )


def _read(path: Path, budget: int, what: str) -> str:
    """The text of `path`, refused before reading when it is larger than `budget` bytes."""
    if path.stat().st_size > budget:
        raise RenderError(f"{what}: larger than the limit")
    with path.open("rb") as handle:
        data = handle.read(budget + 1)
    if len(data) > budget:
        raise RenderError(f"{what}: larger than the limit")
    return data.decode()


def _values(repo: Path, folder: Path, source: Source, limits: Limits) -> dict[str, Any]:
    values: dict[str, Any] = {}
    budget = limits.max_bytes
    for rel in source.value_files:
        path = inside(repo, rel, base=folder)
        if not path.is_file():
            raise RenderError(f"value file {rel} does not exist at this revision")
        size = path.stat().st_size
        if size > budget:
            raise RenderError(
                f"value file {rel}: value files are larger than the limit of "
                f"{limits.max_bytes} bytes"
            )
        budget -= size
        _progress(f"value file {rel}")
        try:
            loaded = load(_read(path, size, rel), limits.max_nodes, limits.max_depth) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RenderError(f"value file {rel} is not valid YAML: {err}") from err
        if not isinstance(loaded, dict):
            raise RenderError(f"value file {rel} is not a map")
        values = merge(values, loaded)
    if source.values:
        _progress("helm.values")
        try:
            inline = load(source.values, limits.max_nodes, limits.max_depth) or {}
        except yaml.YAMLError as err:
            raise RenderError(f"helm.values is not valid YAML: {err}") from err
        values = merge(values, inline)
    return merge(values, source.values_object)


def _render_chart(
    repo: Path,
    folder: Path,
    source: Source,
    namespace: str,
    helm: Path,
    include_crds: bool,
    limits: Limits,
) -> list[dict[str, Any]]:
    values = _values(repo, folder, source, limits)
    with tempfile.TemporaryDirectory(prefix="herd-render-") as scratch:
        folder = _with_dependencies(repo, source, folder, source.path, Path(scratch), limits)
        return _helm_template(folder, source, namespace, helm, include_crds, limits, values)


def _helm_template(
    folder: Path,
    source: Source,
    namespace: str,
    helm: Path,
    include_crds: bool,
    limits: Limits,
    values: dict[str, Any],
) -> list[dict[str, Any]]:
    command = [
        str(helm),
        "template",
        source.release_name,
        str(folder),
        "--include-crds" if include_crds else "--skip-crds",
        # `helm test` pods are for `helm test`, never part of what is installed (as with
        # `helm install`): applying them would run the chart's tests on every sync.
        "--skip-tests",
        "--namespace",
        namespace,
        "--values",
        "-",
        *parameter_args(source.parameters),
    ]
    return _render_with(
        command,
        json.dumps(values).encode(),
        ("helm", "template"),
        source.path,
        limits,
        program="helm",
    )


def _render_with(
    command: list[str],
    stdin: bytes,
    tool: tuple[str, str],
    path: str,
    limits: Limits,
    *,
    program: str,
    env: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> list[dict[str, Any]]:
    """The objects a Go renderer prints (helm template, kubectl's kustomize build), run
    under `limits`: `tool` (its name and verb) and `path` name it in errors, `program` is
    what runs; paths under `root` in its errors as the repository names them."""
    what = f"{tool[0]} {tool[1]} {path}"
    try:
        result = _run(command, stdin, limits.max_bytes, limits.timeout, env=env)
    except OSError as err:
        raise RenderError(f"{what}: cannot run {program}: {err}") from err
    if result.problem == "timeout":
        raise RenderError(f"{what} timed out")
    if result.problem == "output":
        raise RenderError(
            f"{path} renders more than the limit of {limits.max_bytes} bytes "
            f"({tool[0]} was stopped)"
        )
    if result.returncode != 0:
        stderr = result.err.decode(errors="replace").strip()
        # Go's runtime may say why before its "fatal error:" line (a block it could not have)
        head = stderr.splitlines()[:3]
        fatal = next((line for line in head if line.startswith("fatal error:")), None)
        # and words a refused allocation by where it was refused
        if fatal is not None and any(m in line for line in head for m in _GO_OOM):
            stderr = f"out of memory (more than {limits.max_memory // MiB} MiB)"
        elif fatal is not None:
            stderr = fatal  # not the goroutine dump after it
        elif result.returncode is not None and result.returncode < 0:
            stderr = f"killed by {_signal_name(-result.returncode)}"
        if root is not None:  # paths as the repository names them, not the operator's disk
            stderr = stderr.replace(f"{root}/", "").replace(str(root), ".")
        raise RenderError(f"{what} failed: {stderr[:4000]}")
    _progress(f"the output of {what}")
    try:
        text = result.out.decode()
        return [d for d in load_all_capped(text, limits.max_nodes, limits.max_depth) if d]
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RenderError(f"{what}: output is not valid YAML: {err}") from err


def _load_manifests(
    folder: Path, where: str, limits: Limits, directory: Mapping[str, Any]
) -> list[dict[str, Any]]:
    objects: list[Any] = []
    total = 0
    for path, name in manifest_files(folder, directory):
        size = path.stat().st_size  # before reading it
        total += size
        if total > limits.max_bytes:
            raise RenderError(
                f"{folder.name}: manifests are larger than the limit of {limits.max_bytes} bytes"
            )
        _progress(name)
        try:
            docs = load_all(_read(path, size, name), limits.max_nodes, limits.max_depth)
            for doc in docs:
                if doc is None:
                    continue
                if (
                    isinstance(doc, dict)
                    and str(doc.get("kind", "")).endswith("List")
                    and isinstance(doc.get("items"), list)
                ):
                    objects.extend(doc["items"])
                else:
                    check_object(doc, name)
                    objects.append(doc)
                if len(objects) > limits.max_objects:  # no need to build the rest
                    raise RenderError(
                        f"{where} renders {len(objects)} objects, more than the limit of "
                        f"{limits.max_objects} (counting stopped in {name})"
                    )
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RenderError(f"{name} is not valid YAML: {err}") from err
        except RecursionError as err:
            raise RenderError(f"{name} is not valid YAML: nested too deeply") from err
    return objects


# -- directory: recurse, include, exclude ---------------------------------------------------
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _braces(pattern: str) -> list[str]:
    """`{a,b}` alternatives expanded (nested too), as Argo's globs read them."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    for end in range(start, len(pattern)):
        if pattern[end] == "{":
            depth += 1
        elif pattern[end] == "}":
            depth -= 1
            if depth == 0:
                break
    else:
        return [pattern]  # no closing brace: literal
    inner, parts, level, begin = pattern[start + 1 : end], [], 0, 0
    for i, char in enumerate(inner):
        if char == "{":
            level += 1
        elif char == "}":
            level -= 1
        elif char == "," and level == 0:
            parts.append(inner[begin:i])
            begin = i + 1
    parts.append(inner[begin:])
    head, rest = pattern[:start], pattern[end + 1 :]
    out: list[str] = []
    for part in parts:
        for expanded in _braces(head + part + rest):
            out.append(expanded)
            if len(out) > 256:
                raise RenderError(f"directory glob {pattern!r} expands to too many patterns")
    return out


def glob_match(pattern: str, path: str) -> bool:
    """Argo's directory include/exclude: `*` matches across `/`, `{a,b}` alternatives."""
    return any(fnmatch.fnmatchcase(path, p) for p in _braces(pattern))


def manifest_files(folder: Path, directory: Mapping[str, Any]) -> Iterator[tuple[Path, str]]:
    """The manifest files of a plain folder (sorted; with `recurse`, subfolders too, depth
    first), as (path, name relative to the folder) after Argo's include and exclude."""
    include, exclude = directory.get("include") or "", directory.get("exclude") or ""
    if directory.get("jsonnet"):
        raise RenderError("spec.source.directory.jsonnet is not supported")
    if directory.get("recurse"):
        walked: list[Path] = []
        for parent, dirs, files in os.walk(folder):  # symlinked folders are not entered
            dirs[:] = sorted(d for d in dirs if d != ".git")
            walked.extend(Path(parent) / f for f in files)
            if len(walked) > 100_000:
                raise RenderError(f"{folder.name}: more than 100000 files to read")
        paths = sorted(walked, key=lambda p: p.relative_to(folder).as_posix())
    else:
        paths = sorted(folder.iterdir())
    for path in paths:
        name = path.relative_to(folder).as_posix()
        if path.suffix not in MANIFEST_SUFFIXES or not path.is_file():
            continue
        if exclude and glob_match(exclude, name):
            continue
        if include and not glob_match(include, name):
            continue
        yield path, name


# -- helm parameters and chart dependencies -------------------------------------------------
def _escape_commas(value: str) -> str:
    """Argo's escaping of a --set value: commas are literal, unless the value is a list
    `{a,b}`; a comma already escaped stays as it is."""
    if value.startswith("{") and value.endswith("}"):
        return value
    out, previous = [], ""
    for char in value:
        out.append("\\," if char == "," and previous != "\\" else char)
        previous = char
    return "".join(out)


def parameter_args(parameters: tuple[tuple[str, str, bool], ...]) -> list[str]:
    """helm.parameters as helm's arguments (after --values: they win, as in Argo)."""
    args: list[str] = []
    for name, value, force_string in parameters:
        args += ["--set-string" if force_string else "--set", f"{name}={_escape_commas(value)}"]
    return args


def _chart_dependencies(chart: Path, where: str, limits: Limits) -> list[dict[str, Any]]:
    path = chart / "Chart.yaml"
    try:
        meta = load(_read(path, MiB, f"{where}/Chart.yaml"), limits.max_nodes, limits.max_depth)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RenderError(f"{where}/Chart.yaml is not valid YAML: {err}") from err
    deps = meta.get("dependencies") if isinstance(meta, dict) else None
    if not isinstance(deps, list):
        return []
    return [d for d in deps if isinstance(d, dict) and isinstance(d.get("name"), str)]


def _vendored(chart: Path, name: str, limits: Limits) -> bool:
    """Whether charts/ holds chart `name` already (a folder or a packaged .tgz)."""
    sub = chart / "charts"
    if not sub.is_dir():
        return False
    for entry in sub.iterdir():
        if entry.name.endswith(".tgz") and entry.name.startswith(f"{name}-"):
            return True
        if entry.is_dir() and (entry / "Chart.yaml").is_file():
            with contextlib.suppress(OSError, yaml.YAMLError, UnicodeDecodeError):
                meta = load(
                    _read(entry / "Chart.yaml", MiB, entry.name),
                    limits.max_nodes,
                    limits.max_depth,
                )
                if isinstance(meta, dict) and meta.get("name") == name:
                    return True
    return False


_DEPENDENCY_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # what helm allows in a chart's name


def _local_dependencies(
    repo: Path, chart: Path, where: str, limits: Limits, depth: int = 0
) -> list[tuple[str, Path]]:
    """The `file://` dependencies of `chart` missing from its charts/: (name, folder in the
    repository). A dependency neither vendored nor local is refused: Herd fetches no chart
    repository (it would be a download at every render, from anywhere a commit names)."""
    if depth > 10:
        raise RenderError(f"{where}: chart dependencies nested more than 10 deep")
    out = []
    for dep in _chart_dependencies(chart, where, limits):
        name, url = dep["name"], str(dep.get("repository") or "")
        if _vendored(chart, name, limits):
            continue
        if not url.startswith("file://"):
            raise RenderError(
                f"{where}: dependency {name} from repository {url or '(none)'!r} is not in "
                "charts/, and Herd fetches no chart repository: vendor it "
                "(`helm dependency build`, then commit charts/) or use a file:// path in "
                "this repository"
            )
        folder = inside(repo, url[len("file://") :], base=chart)
        if not (folder / "Chart.yaml").is_file():
            raise RenderError(f"{where}: dependency {name}: {url} is not a chart at this revision")
        out.append((name, folder))
    return out


def _with_dependencies(
    repo: Path, source: Source, chart: Path, where: str, scratch: Path, limits: Limits
) -> Path:
    """`chart`, or a copy of it in `scratch` with its `file://` dependencies (and theirs)
    copied into charts/, as `helm dependency build` would package them, with no network."""
    if not _local_dependencies(repo, chart, where, limits):
        return chart
    copy_root = scratch / "tree"
    budget = CopyBudget(limits.max_copy_bytes, where)
    # What render may read, where it lies in the checkout.
    copy_reads(repo, source, copy_root, budget)
    copied = copy_root / chart.relative_to(repo.resolve())

    def vendor(original: Path, target: Path, depth: int) -> None:
        for name, folder in _local_dependencies(repo, original, where, limits, depth):
            if not _DEPENDENCY_NAME.fullmatch(name):  # a path, not a name: ../ leaves scratch
                raise RenderError(f"{where}: dependency name {name!r} is not a chart name")
            dest = target / "charts" / f"{name}-dependency"
            dest.parent.mkdir(exist_ok=True)
            if dest.exists():
                continue
            shutil.copytree(folder, dest, symlinks=True, copy_function=budget.copy)
            vendor(folder, dest, depth + 1)

    vendor(chart, copied, 0)
    # A dependency moves to another depth: a relative link that stayed inside the checkout
    # from deep down may leave the copy from its new place (the pod's token, other trees).
    if escaping := escaping_symlinks(copy_root):
        raise RenderError(
            f"{where}: a symbolic link of a file:// dependency points outside the repository "
            f"once the dependency is in charts/: {', '.join(escaping[:5])}"
        )
    return copied


# -- kustomize --------------------------------------------------------------------------------
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Fields of a kustomization naming files or folders (lists of paths, or of maps with `path`).
_PATH_LISTS = ("resources", "bases", "components", "crds", "configurations")
_PLUGIN_LISTS = ("generators", "transformers", "validators")
_REMOTE_PREFIXES = ("git@", "git::", "github.com/", "gitlab.com/", "bitbucket.org/", "gh:")


def kustomization_file(folder: Path) -> Path | None:
    return next((folder / n for n in KUSTOMIZATION_FILES if (folder / n).is_file()), None)


def source_type(folder: Path, source: Source) -> str:
    """ "helm", "kustomize" or "directory": what the spec says, else what the folder holds
    (a Chart.yaml first, then a kustomization)."""
    if source.kustomize is not None:
        if kustomization_file(folder) is None:
            raise RenderError(
                f"spec.source.kustomize is set but {source.path} has no kustomization.yaml"
            )
        return "kustomize"
    if source.directory is not None:
        return "directory"
    if (folder / "Chart.yaml").is_file():
        return "helm"
    if kustomization_file(folder) is not None:
        return "kustomize"
    return "directory"


def find_kubectl() -> Path | None:
    # Imported here: each render's child process imports this module, and the settings
    # (pydantic-settings) were 190 of its 270 ms of imports.
    from herd_operator.settings import get_settings

    found = get_settings().kubectl or shutil.which("kubectl")
    return Path(found) if found else None


def _remote(reference: str) -> bool:
    return "://" in reference or reference.startswith(_REMOTE_PREFIXES) or "?ref=" in reference


@dataclass
class _Walk:
    """What a static walk of kustomizations found: their files' bytes, their count, and (in
    discovery) the repository paths they name that the checkout lacks."""

    repo: Path
    limits: Limits
    missing: list[str] | None = None  # discovery: collect instead of refusing
    seen: set[Path] = field(default_factory=set)
    bytes: int = 0

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.repo.resolve())


def _references(kust: Mapping[str, Any], where: str) -> Iterator[tuple[str, str, bool]]:
    """(field, reference, may be a kustomization folder) for each path `kust` names."""

    def strings(value: Any, name: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RenderError(f"{where}: {name} must be a list of strings")
        return value

    for name in _PATH_LISTS:
        for ref in strings(kust.get(name), name):
            yield name, ref, name != "crds" and name != "configurations"
    for name in _PLUGIN_LISTS:
        for ref in strings(kust.get(name), name):
            if "\n" not in ref:  # else an inline plugin configuration
                yield name, ref, True
    for ref in strings(kust.get("patchesStrategicMerge"), "patchesStrategicMerge"):
        if "\n" not in ref:
            yield "patchesStrategicMerge", ref, False
    for name in ("patches", "patchesJson6902", "replacements"):
        for item in kust.get(name) or ():
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                yield name, item["path"], False
    openapi = kust.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        yield "openapi", openapi["path"], False
    for name in ("configMapGenerator", "secretGenerator"):
        for gen in kust.get(name) or ():
            if not isinstance(gen, dict):
                continue
            for entry in strings(gen.get("files"), f"{name}.files"):
                yield name, entry.partition("=")[2] or entry, False
            for entry in strings(gen.get("envs"), f"{name}.envs"):
                yield name, entry, False
            if isinstance(gen.get("env"), str):
                yield name, gen["env"], False


def _walk_kustomization(walk: _Walk, folder: Path, depth: int = 0) -> None:
    """Check a kustomization and the local ones it builds on, before kustomize runs: every
    path it names is in the repository (no URL, git reference, `../` or symlink out of it),
    no Helm inflation, and the files it reads stay under the byte limit."""
    where = walk.relative(folder)
    folder = folder.resolve()
    if folder in walk.seen:
        return
    walk.seen.add(folder)
    if len(walk.seen) > 200 or depth > 50:
        raise RenderError(f"{where}: more than 200 kustomizations, or nested 50 deep")
    file = kustomization_file(folder)
    if file is None:
        if walk.missing is not None:
            return
        raise RenderError(f"{where}: not a kustomization (no kustomization.yaml)")
    inside(walk.repo, file)
    walk.bytes += file.stat().st_size
    if walk.bytes > walk.limits.max_bytes:
        raise RenderError(f"{where}: kustomize would read more than {walk.limits.max_bytes} bytes")
    name = f"{where}/{file.name}"
    _progress(name)
    try:
        kust = (
            load(
                _read(file, walk.limits.max_bytes, name),
                walk.limits.max_nodes,
                walk.limits.max_depth,
            )
            or {}
        )
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RenderError(f"{name} is not valid YAML: {err}") from err
    if not isinstance(kust, dict):
        raise RenderError(f"{name} is not a map")
    for refused in ("helmCharts", "helmGlobals", "helmChartInflationGenerator"):
        if refused in kust:
            raise RenderError(
                f"{name}: {refused}: kustomize's Helm inflation is not supported (make the "
                "chart an Application of its own, or render it into the repository)"
            )
    for field_, ref, may_be_folder in _references(kust, name):
        if _remote(ref):
            raise RenderError(
                f"{name}: {field_} {ref!r} is remote: only paths inside the repository are "
                "allowed (vendor it)"
            )
        try:
            target = inside(walk.repo, ref, base=folder)
        except RenderError as err:
            raise RenderError(f"{name}: {field_} {ref!r} leaves the repository") from err
        if not target.exists():
            if walk.missing is not None:
                walk.missing.append(walk.relative(target))
                continue
            raise RenderError(f"{name}: {field_} {ref!r} does not exist at this revision")
        if target.is_dir():
            if may_be_folder:
                _walk_kustomization(walk, target, depth + 1)
            continue
        walk.bytes += target.stat().st_size  # each time it is named: each is read
        if walk.bytes > walk.limits.max_bytes:
            raise RenderError(
                f"{name}: the files it reads are larger than the limit of "
                f"{walk.limits.max_bytes} bytes (at {field_} {ref!r})"
            )


def _image_edit(images: list[Any], spec: str) -> None:
    """`kustomize edit set image` of `spec` on the kustomization's `images`."""
    name, equals, rest = spec.partition("=")
    target = rest if equals else spec
    entry: dict[str, Any] = {}
    ref, at, digest = target.partition("@")
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    image, tag = (ref[:colon], ref[colon + 1 :]) if colon > slash else (ref, "")
    if not equals:
        name = image
    elif image and image != name:
        entry["newName"] = image
    if at:
        entry["digest"] = digest
    elif tag:
        entry["newTag"] = tag
    for existing in images:
        if isinstance(existing, dict) and existing.get("name") == name:
            existing.update(entry)
            if at:
                existing.pop("newTag", None)
            return
    images.append({"name": name, **entry})


def edit_kustomization(kust: dict[str, Any], edits: Mapping[str, Any]) -> dict[str, Any]:
    """Argo's `kustomize edit` of spec.source.kustomize on a kustomization (a copy): prefix,
    suffix and namespace set; images, labels, annotations and replicas merged; patches
    appended."""
    out = copy.deepcopy(kust)
    for key in ("namePrefix", "nameSuffix", "namespace"):
        if edits.get(key):
            out[key] = edits[key]
    for spec in edits.get("images") or ():
        _image_edit(out.setdefault("images", []), spec)
    for key in ("commonLabels", "commonAnnotations"):
        if edits.get(key):
            out[key] = {**(out.get(key) or {}), **edits[key]}
    for replica in edits.get("replicas") or ():
        replicas = out.setdefault("replicas", [])
        found = next((r for r in replicas if r.get("name") == replica["name"]), None)
        if found is None:
            replicas.append({"name": replica["name"], "count": replica["count"]})
        else:
            found["count"] = replica["count"]
    for patch in edits.get("patches") or ():
        if "path" in patch:
            raise RenderError("spec.source.kustomize.patches: only inline patches (patch:)")
        out.setdefault("patches", []).append(dict(patch))
    unknown = set(edits) - {
        "namePrefix",
        "nameSuffix",
        "namespace",
        "images",
        "commonLabels",
        "commonAnnotations",
        "replicas",
        "patches",
    }
    if unknown:
        raise RenderError(f"spec.source.kustomize: {', '.join(sorted(unknown))} not supported")
    return out


def _kustomize_env(scratch: Path) -> dict[str, str]:
    """What kustomize runs with: no git on PATH (remote bases need one), git's protocols off
    should it find one, every proxy a closed port (plain HTTP resources), no kubeconfig."""
    dead = "http://127.0.0.1:9"
    return {
        "PATH": str(scratch / "no-bin"),
        "HOME": str(scratch),
        "GIT_ALLOW_PROTOCOL": "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
        "NO_PROXY": "",
        "KUBECONFIG": str(scratch / "no-kubeconfig"),
    }


def _render_kustomize(
    repo: Path, folder: Path, source: Source, kubectl: Path | None, limits: Limits
) -> list[dict[str, Any]]:
    if kubectl is None:
        raise RenderError(
            f"{source.path} is a kustomization, and the operator has no kubectl to build it "
            "(set HERD_KUBECTL)"
        )
    with tempfile.TemporaryDirectory(prefix="herd-kustomize-") as tmp:
        scratch = Path(tmp)
        root, build = repo.resolve(), folder
        if source.kustomize:  # edited on a copy of the checkout: relative bases still work
            root = scratch / "tree"
            copy_reads(repo, source, root, CopyBudget(limits.max_copy_bytes, source.path))
            build = root / folder.relative_to(repo.resolve())
            file = kustomization_file(build)
            assert file is not None
            where = f"{source.path}/{file.name}"
            try:
                kust = load(
                    _read(file, limits.max_bytes, where), limits.max_nodes, limits.max_depth
                )
                kust = kust or {}
            except (yaml.YAMLError, UnicodeDecodeError) as err:
                raise RenderError(f"{where} is not valid YAML: {err}") from err
            if not isinstance(kust, dict):
                raise RenderError(f"{where} is not a map")
            edited = edit_kustomization(kust, source.kustomize)
            file.unlink()  # a symlink (in the repository) is replaced, not written through
            file.write_text(yaml.safe_dump(edited, sort_keys=False))
        _walk_kustomization(_Walk(root, limits), build)
        command = [
            str(kubectl),
            "kustomize",
            str(build),
            # Files only from inside each kustomization's folder; folders (bases) were
            # checked above to be in the repository.
            "--load-restrictor",
            "LoadRestrictionsRootOnly",
            "--enable-helm=false",
            "--enable-alpha-plugins=false",
        ]
        _progress(f"kustomize build {source.path}")
        return _render_with(
            command,
            b"",
            ("kustomize", "build"),
            source.path,
            limits,
            program="kubectl",
            env=_kustomize_env(scratch),
            root=root,
        )


# -- what a render reads beyond its folder (for a sparse checkout) ---------------------------
def more_reads(tree: Path, source: Source) -> list[str]:
    """Repository paths that rendering `source` reads and `tree` lacks: kustomize bases and
    files outside the folder, charts' `file://` dependencies. Best effort: what cannot be
    read now is refused by the render itself, with its message."""
    missing: list[str] = []
    # This runs in the operator's own process: small caps (the render child has the real
    # ones, and says what is past them).
    limits = Limits(max_bytes=MiB, max_nodes=50_000, max_depth=50)
    with contextlib.suppress(RenderError, OSError, yaml.YAMLError, UnicodeDecodeError):
        folder = inside(tree, source.path)
        if not folder.is_dir():
            return []
        kind = source_type(folder, source)
        if kind == "kustomize":
            _walk_kustomization(_Walk(tree, limits, missing=missing), folder)
        elif kind == "helm":
            todo, seen = [folder], set[Path]()
            while todo and len(seen) < 50:
                chart = todo.pop()
                seen.add(chart)
                for dep in _chart_dependencies(chart, source.path, limits):
                    url = str(dep.get("repository") or "")
                    if not url.startswith("file://") or _vendored(chart, dep["name"], limits):
                        continue
                    target = inside(tree, url[len("file://") :], base=chart)
                    if (target / "Chart.yaml").is_file():
                        if target not in seen:
                            todo.append(target)
                    else:
                        missing.append(os.path.relpath(target, tree.resolve()))
    return missing


class CopyBudget:
    """The bytes a render may copy of its checkout (Limits.max_copy_bytes), spent by each
    file copied: past it the render fails, before the disk fills."""

    def __init__(self, limit: int, where: str) -> None:
        self.limit, self.where, self.used = limit, where, 0

    def copy(self, src: str | Path, dst: str | Path, *, follow_symlinks: bool = True) -> Any:
        """A shutil copy function (copytree's copy_function)."""
        self.used += os.lstat(src).st_size
        if self.used > self.limit:
            raise RenderError(
                f"{self.where}: rendering it copies more than {self.limit // MiB} MiB of the "
                "repository (its folder, value files, bases and file:// dependencies)"
            )
        return shutil.copy2(src, dst, follow_symlinks=follow_symlinks)


def copy_reads(repo: Path, source: Source, dest: Path, budget: CopyBudget | None = None) -> None:
    """Copy into `dest` what rendering `source` reads of the checkout `repo`, where it lies:
    the same paths a sparse checkout holds (its folder and value files, the bases and
    dependencies they name, what symlinks among them point at), not the rest of a
    monorepo whose whole tree is shared by its Applications. `budget` caps the bytes."""
    copy_file = shutil.copy2 if budget is None else budget.copy
    from herd_operator.gitops.git import checkout_paths, dangling_targets

    root = repo.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()

    def copy(paths: Iterable[str]) -> None:
        for rel in checkout_paths(paths):
            if rel in done:
                continue
            done.add(rel)
            src, dst = root / rel, dest / rel
            if rel == ".":
                shutil.copytree(
                    root, dest, symlinks=True, dirs_exist_ok=True, copy_function=copy_file
                )
            elif src.is_dir() and not src.is_symlink():
                shutil.copytree(
                    src, dst, symlinks=True, dirs_exist_ok=True, copy_function=copy_file
                )
            elif os.path.lexists(src):
                dst.parent.mkdir(parents=True, exist_ok=True)
                copy_file(src, dst, follow_symlinks=False)

    reads = list(source.reads())
    copy(reads)
    for _ in range(8):
        more = [p for p in more_reads(dest, source) if p not in reads]
        if not more:
            break
        reads += more
        copy(more)
    for _ in range(10):  # links to links: a round per level, as the checkout does
        todo = dangling_targets(dest, lambda p: os.path.lexists(root / p))
        if not set(todo) - done:
            break
        copy(todo)


def checkout_reads(source: Source, checkout: Callable[[tuple[str, ...]], Path]) -> Path:
    """A checkout of what rendering `source` reads: its folder and value files, then, a
    round at a time, the bases and dependencies they name outside it."""
    reads = source.reads()
    tree = checkout(reads)
    for _ in range(8):
        more = [p for p in more_reads(tree, source) if p not in reads]
        if not more:
            break
        reads = (*reads, *more)
        tree = checkout(reads)
    return tree
