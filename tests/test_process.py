"""The process wrapper of the local platform, the tests and the benches, through real
processes (so not in the fast layer)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from herd_devkit.local.process import alive, spawn, stop, wait_until


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
