"""The process wrapper of the local platform, the tests and the benches, through real
processes (so not in the fast layer)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from herd_devkit.local.process import (
    SPAWNED,
    alive,
    free_port,
    leftovers,
    spawn,
    stop,
    wait_until,
    write_state,
)
from herd_devkit.local.service import NotHealthy, Service


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    # A parent that ignores SIGTERM and has a child: stop() must still leave nothing.
    script = (
        "import signal,subprocess,time;signal.signal(signal.SIGTERM,signal.SIG_IGN);"
        "subprocess.Popen(['sleep','300']);time.sleep(300)"
    )
    popen, record = spawn("stubborn", [sys.executable, "-c", script], tmp_path / "p.log")
    assert wait_until(lambda: alive(record), 10)
    children = Path(f"/proc/{record.pid}/task/{record.pid}/children")
    assert wait_until(lambda: children.read_text().strip() != "", 10)
    child = int(children.read_text().split()[0])
    stop(record, popen, grace=1)
    assert popen.returncode == -signal.SIGKILL
    assert wait_until(
        lambda: (
            not Path(f"/proc/{child}").exists()
            or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
        ),
        10,
    )


def _server(tmp_path: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "-d",
        str(tmp_path),
    ]


def test_a_service_waits_for_health_survives_a_kill_and_stops(tmp_path: Path) -> None:
    port = free_port()
    service = Service("web", tmp_path / "services", tie_to_parent=True)
    health = f"http://127.0.0.1:{port}/"
    service.start(_server(tmp_path, port), None, health=health, port=port)
    assert service.running()
    assert service.info()["port"] == port  # kept in its state file, for `make up`
    first = service.pids()[0]

    service.kill()  # a crash: SIGKILL, nothing cleaned up
    assert service.popen is not None and service.popen.returncode == -signal.SIGKILL
    assert not service.alive() and not service.running()

    service.start(_server(tmp_path, port), None, health=health)
    assert service.running() and service.pids()[0] != first
    service.stop()
    assert not service.alive()
    assert not service.state_file.exists()


def test_a_service_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    service = Service("doomed", tmp_path / "services", tie_to_parent=True)
    script = "import sys; print('missing HERD_EMAIL_QUEUE_URL', flush=True); sys.exit(3)"
    with pytest.raises(NotHealthy, match="exited with 3") as caught:
        service.start([sys.executable, "-c", script], None, health="http://127.0.0.1:1/")
    assert "missing HERD_EMAIL_QUEUE_URL" in str(caught.value)
    assert not service.state_file.exists()
    assert service.log == tmp_path / "logs" / "doomed.log"  # beside services/, as `make up` has it


def test_leftovers_are_what_we_spawned_or_recorded_and_still_runs(tmp_path: Path) -> None:
    """What pytest_sessionfinish fails the run on: a spawned process, or one a detached
    command recorded in a state file under the given folders, that still runs."""
    tied, tied_record = spawn("sleeper", ["sleep", "300"], tmp_path / "tied.log")
    detached, detached_record = spawn(
        "detached", ["sleep", "301"], tmp_path / "detached.log", tie_to_parent=False
    )
    SPAWNED.remove(detached_record)  # as if another `herd` process had started it
    write_state(tmp_path / "services" / "detached.json", [detached_record])
    assert {r.pid for r in leftovers(tmp_path)} >= {tied.pid, detached.pid}
    stop(tied_record, tied, grace=1)
    stop(detached_record, detached, grace=1)
    assert not {r.pid for r in leftovers(tmp_path)} & {tied.pid, detached.pid}
