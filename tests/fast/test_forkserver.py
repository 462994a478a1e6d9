"""The render's fork server: renders are forked from one process, each still in a session of
its own, and a dead server is replaced without losing a render."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd_devkit.local.tools import binary
from herd_operator.gitops import forkserver, render
from herd_operator.gitops.render import Source

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "cm.yaml").write_text(CM)
    return tmp_path


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> Iterator[forkserver.ForkServer]:
    server = forkserver.ForkServer("herd_operator.gitops.render:_child")
    monkeypatch.setattr(render, "_FORKS", server)
    yield server
    server.stop()


def _server_pid(forks: forkserver.ForkServer) -> int:
    assert forks._proc is not None
    return forks._proc.pid


def test_renders_are_forked_from_one_server(forks: forkserver.ForkServer, tree: Path) -> None:
    helm = binary("helm")
    assert [o["metadata"]["name"] for o in render.render(tree, Source("app"), "n", helm)] == ["c"]
    server = _server_pid(forks)
    children = []
    for _ in range(3):
        child = forks.spawn()
        children.append(child.pid)
        # Its own process group (helm is killed with it), under the server, not us.
        assert os.getpgid(child.pid) == child.pid
        with open(f"/proc/{child.pid}/stat") as stat:
            assert int(stat.read().rsplit(")", 1)[1].split()[1]) == server  # its parent
        child.stdin.close()  # the render reads an empty request: it fails and exits
        assert child.wait(10) != 0
        child.release()
    assert len(set(children)) == 3 and _server_pid(forks) == server
    render.render(tree, Source("app"), "n", helm)
    assert _server_pid(forks) == server


def test_a_child_killed_by_a_signal_says_so(forks: forkserver.ForkServer) -> None:
    child = forks.spawn()
    assert child.poll() is None
    with pytest.raises(forkserver.subprocess.TimeoutExpired):
        child.wait(0.1)
    child.kill()
    assert child.wait(10) == -signal.SIGKILL
    assert child.poll() == -signal.SIGKILL
    # Not reaped while the caller holds it: its pid (and group) cannot be another's yet.
    assert _state(child.pid) == "Z"
    child.release()
    deadline = time.monotonic() + 10
    while _state(child.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _state(child.pid) is None  # reaped once let go


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_a_child_whose_server_died_is_killed_and_said_lost(
    forks: forkserver.ForkServer,
) -> None:
    child = forks.spawn()  # waits on its stdin, which we keep open
    os.kill(_server_pid(forks), signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL and child.lost
    deadline = time.monotonic() + 10
    while _state(child.pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _state(child.pid) in (None, "Z")  # killed with its group (a zombie of init's)
    child.release()


def test_a_dead_server_is_replaced(forks: forkserver.ForkServer, tree: Path) -> None:
    helm = binary("helm")
    render.render(tree, Source("app"), "n", helm)
    first = _server_pid(forks)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while forks._proc is not None and forks._proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [o["metadata"]["name"] for o in render.render(tree, Source("app"), "n", helm)] == ["c"]
    assert _server_pid(forks) != first


def test_the_server_ends_with_its_caller(forks: forkserver.ForkServer, tree: Path) -> None:
    render.render(tree, Source("app"), "n", binary("helm"))
    proc = forks._proc
    assert proc is not None
    forks._control.close()  # type: ignore[union-attr]  # as when the operator dies
    assert proc.wait(10) == 0
