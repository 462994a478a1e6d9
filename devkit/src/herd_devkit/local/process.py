"""Start and stop the local platform's processes, leaving none behind.

Each process gets its own session (so a signal reaches its whole group) and a log file. A
process tied to its parent receives SIGKILL when the parent dies (Linux PR_SET_PDEATHSIG), so
a test run that is killed does not leak an apiserver; detached ones (`herd cluster up`) are
recorded by pid and command in a state file and stopped from there.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Every process this Python process started (the test suite checks none is left at its end).
SPAWNED: list[ProcessRecord] = []


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class ProcessRecord:
    """What we need to find a process again: pid plus the executable, against pid reuse."""

    name: str
    pid: int
    exe: str
    log: str


def spawn(
    name: str,
    args: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    tie_to_parent: bool = True,
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if tie_to_parent else None,
        )
    record = ProcessRecord(name=name, pid=proc.pid, exe=str(args[0]), log=str(log))
    SPAWNED.append(record)
    return proc, record


def alive(record: ProcessRecord) -> bool:
    """True while the recorded process runs (a zombie or a reused pid counts as gone)."""
    try:
        stat = Path(f"/proc/{record.pid}/stat").read_text()
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):
        return False
    return any(Path(os.fsdecode(part)).name == Path(record.exe).name for part in cmdline[:2])


def stop(
    record: ProcessRecord, popen: subprocess.Popen[bytes] | None = None, grace: float = 15
) -> None:
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it."""
    stop_all([record], {record.pid: popen} if popen is not None else {}, grace)


def stop_all(
    records: Sequence[ProcessRecord],
    popens: Mapping[int, subprocess.Popen[bytes]] | None = None,
    grace: float = 15,
) -> None:
    """Stop every process group at once: SIGTERM all, wait up to `grace` seconds, SIGKILL
    whatever is left and wait again. One that will not die never spares the others (a slow
    machine once kept an etcd alive that way); the survivors are named at the end."""
    popens = popens or {}

    def running() -> list[ProcessRecord]:
        return [r for r in records if _running(r, popens.get(r.pid))]

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        left = running()
        if not left:
            return
        for record in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, sig)
        wait_until(lambda: not running(), wait)
    if left := running():
        names = ", ".join(f"{r.name} (pid {r.pid})" for r in left)
        raise RuntimeError(f"{names} did not stop")


def _running(record: ProcessRecord, popen: subprocess.Popen[bytes] | None) -> bool:
    if popen is not None:
        return popen.poll() is None
    return alive(record)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; never a bare sleep as sync."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def write_state(path: Path, records: Sequence[ProcessRecord], **extra: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"processes": [asdict(r) for r in records], **extra}, indent=2))
    tmp.replace(path)


def read_state(path: Path) -> tuple[list[ProcessRecord], dict[str, object]]:
    if not path.exists():
        return [], {}
    data = json.loads(path.read_text())
    records = [ProcessRecord(**r) for r in data.pop("processes", [])]
    return records, data


def leftovers(*roots: Path) -> list[ProcessRecord]:
    """Processes still running that this Python process spawned, or that a state file under
    `roots` records (detached `herd` commands): at the end of a test run, none may be."""
    records = list(SPAWNED)
    for root in roots:
        for state in root.rglob("*.json"):
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError, OSError):
                records += read_state(state)[0]
    return list({r.pid: r for r in records if alive(r)}.values())


def free_port() -> int:
    """A free loopback port. Racy by nature (bind, close, reuse): callers retry the start."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
