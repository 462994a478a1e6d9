"""Start-up and shut-down time of one embedded control plane, and its memory.

uv run python bench/controlplane.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import rss_mib  # bench/ is on sys.path when a script runs
from rich.console import Console
from rich.table import Table

from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    starts, stops, rss = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            settings = get_settings().model_copy(update={"state_dir": Path(tmp)})
            cp = ControlPlane.named("bench", settings=settings)
            t0 = time.perf_counter()
            cp.start()
            starts.append(time.perf_counter() - t0)
            rss.append(sum(rss_mib(r.pid) for r in cp.processes()))
            t0 = time.perf_counter()
            cp.stop()
            stops.append(time.perf_counter() - t0)
    table = Table("figure", "median", "max", title=f"embedded control plane, {args.runs} runs")
    table.add_row("start to ready (s)", f"{statistics.median(starts):.1f}", f"{max(starts):.1f}")
    table.add_row("stop (s)", f"{statistics.median(stops):.1f}", f"{max(stops):.1f}")
    table.add_row("RSS after start (MiB)", f"{statistics.median(rss):.0f}", f"{max(rss):.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
