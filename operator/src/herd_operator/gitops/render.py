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
import hashlib
import json
import os
import posixpath
import resource
import select
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MiB = 1024 * 1024


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
        repo: Path, source: Source, namespace: str, helm: Path, include_crds: bool, limits: Limits
    ) -> str:
        parts = [
            str(repo.resolve()),
            dataclasses.asdict(source),
            namespace,
            str(helm),
            include_crds,
            dataclasses.asdict(limits),
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


def render(
    repo: Path,
    source: Source,
    namespace: str,
    helm: Path,
    include_crds: bool = True,
    limits: Limits = Limits(),
    failures: RenderFailures | None = None,
) -> list[dict[str, Any]]:
    """The objects `source` renders to, rendered in a child process (render_here there).
    With `failures`, `repo` must be a checkout that never changes (one per commit)."""
    key = failures.key(repo, source, namespace, helm, include_crds, limits) if failures else ""
    if failures is not None:
        remembered = failures.get(key)
        if remembered is not None:
            raise RenderError(remembered)
    try:
        objects = _render_in_child(repo, source, namespace, helm, include_crds, limits)
    except RenderError as err:
        if failures is not None:
            failures.put(key, str(err))
        raise
    if len(objects) > limits.max_objects:
        raise RenderError(f"{source.path} renders more than {limits.max_objects} objects")
    for obj in objects:
        check_object(obj, source.path)
    return objects


def _render_in_child(
    repo: Path, source: Source, namespace: str, helm: Path, include_crds: bool, limits: Limits
) -> list[dict[str, Any]]:
    request = {
        "repo": str(repo),
        "source": dataclasses.asdict(source),
        "namespace": namespace,
        "helm": str(helm),
        "include_crds": include_crds,
        "limits": dataclasses.asdict(limits),
    }
    # JSON of what at most max_bytes of YAML holds: quotes and nulls take a few times more
    # than their YAML; aliases in Helm output are capped by the node count.
    cap = 4 * limits.max_bytes + MiB
    try:
        run = _run(
            [
                sys.executable,
                "-P",
                "-c",
                "from herd_operator.gitops import render; render._child()",
            ],
            json.dumps(request).encode(),
            max_out=cap,
            timeout=limits.timeout,
            own_group=True,  # helm too is killed with it
        )
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
    src = request["source"]
    source = Source(**{**src, "value_files": tuple(src.get("value_files") or ())})
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
    problem: str | None  # "timeout", or "output" when stdout passed max_out


def _run(
    command: list[str],
    stdin: bytes,
    max_out: int,
    timeout: float,
    own_group: bool = False,
    max_err: int = _STDERR_CAP,
) -> _Run:
    """Run `command` with `stdin`, reading its stdout up to `max_out` bytes and killing it
    past that or past `timeout` (its process group with `own_group`): nothing it writes is
    buffered past the cap. Stderr is kept up to `max_err` bytes."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=own_group,
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
    return _Run(proc.returncode, out, bytes(err), problem)


def _kill(proc: subprocess.Popen[bytes], own_group: bool) -> None:
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
) -> list[dict[str, Any]]:
    """render() in this process: for the child process, and for tests."""
    folder = inside(repo, source.path)
    if not folder.is_dir():
        raise RenderError(f"path {source.path} is not a folder at this revision")
    try:
        if (folder / "Chart.yaml").is_file():
            objects = _render_chart(repo, folder, source, namespace, helm, include_crds, limits)
        else:
            objects = _load_manifests(folder, source.path, limits)
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
    name, and a namespace if given, valid as a path segment)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("apiVersion"), str)
        or not obj["apiVersion"]
        or not isinstance(obj.get("kind"), str)
        or not obj["kind"]
        or not isinstance(meta, dict)
        or not isinstance(meta.get("name"), str)
        or not meta["name"]
    ):
        raise RenderError(
            f"{where}: not an object with apiVersion, kind and metadata.name: "
            f"{json.dumps(obj, default=str)[:200]}"
        )
    for field_ in ("name", "namespace"):
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
    ]
    try:
        result = _run(command, json.dumps(values).encode(), limits.max_bytes, limits.timeout)
    except OSError as err:
        raise RenderError(f"helm template {source.path}: cannot run helm: {err}") from err
    if result.problem == "timeout":
        raise RenderError(f"helm template {source.path} timed out")
    if result.problem == "output":
        raise RenderError(
            f"{source.path} renders more than the limit of {limits.max_bytes} bytes "
            "(helm was stopped)"
        )
    if result.returncode != 0:
        stderr = result.err.decode(errors="replace").strip()
        first = stderr.partition("\n")[0]
        if first.startswith("fatal error:") and "out of memory" in first:  # Go's runtime
            stderr = f"out of memory (more than {limits.max_memory // MiB} MiB)"
        elif first.startswith("fatal error:"):
            stderr = first  # not the goroutine dump after it
        elif result.returncode is not None and result.returncode < 0:
            stderr = f"killed by {_signal_name(-result.returncode)}"
        raise RenderError(f"helm template {source.path} failed: {stderr[:4000]}")
    _progress(f"the output of helm template {source.path}")
    try:
        text = result.out.decode()
        return [d for d in load_all_capped(text, limits.max_nodes, limits.max_depth) if d]
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RenderError(f"helm template {source.path}: output is not valid YAML: {err}") from err


def _load_manifests(folder: Path, where: str, limits: Limits) -> list[dict[str, Any]]:
    objects: list[Any] = []
    total = 0
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        size = path.stat().st_size  # before reading it
        total += size
        if total > limits.max_bytes:
            raise RenderError(
                f"{folder.name}: manifests are larger than the limit of {limits.max_bytes} bytes"
            )
        _progress(path.name)
        try:
            docs = load_all(_read(path, size, path.name), limits.max_nodes, limits.max_depth)
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
                    check_object(doc, path.name)
                    objects.append(doc)
                if len(objects) > limits.max_objects:  # no need to build the rest
                    raise RenderError(
                        f"{where} renders {len(objects)} objects, more than the limit of "
                        f"{limits.max_objects} (counting stopped in {path.name})"
                    )
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RenderError(f"{path.name} is not valid YAML: {err}") from err
        except RecursionError as err:
            raise RenderError(f"{path.name} is not valid YAML: nested too deeply") from err
    return objects
