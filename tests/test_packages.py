"""The workspace is split by what ships: each image holds core and its own program, nothing
of the devkit, and the import contracts (pyproject's [tool.importlinter]) hold."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dockerfile
import pytest

from herd_devkit.local.tools import binary

from .helpers import ROOT

IMAGES = {
    "operator/Dockerfile": ("herd-operator", {"herd-core", "herd-operator"}, {"operator"}),
    "api/Dockerfile": ("herd-api", {"herd-core", "herd-api"}, {"api", "worker"}),
}
MEMBERS = {"herd-core", "herd-operator", "herd-api", "herd-devkit"}


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # The packages' own three, and one per kind: its submodules are its own.
    assert "7 kept, 0 broken" in out.stdout
    for kind in ("tenant", "cognitoclient", "sestemplate", "application"):
        assert f"the {kind} kind's submodules are its own KEPT" in out.stdout


def _stage(path: str, into: Path) -> None:
    """Copy what the Dockerfile's build stage copies from the build context, no more."""
    commands = dockerfile.parse_file(str(ROOT / path))
    build = [c for c in commands if c.cmd == "FROM" and "AS build" in c.original]
    assert build, f"{path} has a build stage"
    start = commands.index(build[0])
    end = next((i for i, c in enumerate(commands) if i > start and c.cmd == "FROM"), len(commands))
    for c in commands[start:end]:
        if c.cmd != "COPY" or any(f.startswith("--from") for f in c.flags):
            continue
        *sources, dest = c.value
        for source in sources:
            target = into / dest
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(
                    src,
                    target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    dirs_exist_ok=True,
                )
            else:
                target = target / src.name if dest.endswith("/") else target
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)


@pytest.mark.slow
@pytest.mark.parametrize("path", list(IMAGES))
def test_each_image_holds_only_its_program(path: str, tmp_path: Path) -> None:
    """The Dockerfile's own COPY lines and `uv sync` run here (no Docker engine): the install
    holds core and the program, not the devkit or moto, and `herd` offers only its commands."""
    package, wanted, commands = IMAGES[path]
    _stage(path, tmp_path)
    assert not (tmp_path / "devkit" / "src").exists(), "the devkit's code is never copied"
    # The shell's own settings (certificates, package index) minus any venv of ours.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT") and not k.startswith("HERD_")
    } | {"UV_PYTHON_DOWNLOADS": "never", "UV_LINK_MODE": "copy"}
    uv = str(binary("uv"))
    for args in (["--no-install-workspace"], ["--no-editable"]):
        sync = [uv, "sync", "--frozen", "--no-dev", *args, "--package", package]
        result = subprocess.run(sync, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    python = tmp_path / ".venv" / "bin" / "python"
    listing = subprocess.run(
        [
            str(python),
            "-c",
            "import json, importlib.metadata as m; "
            "print(json.dumps(sorted(d.metadata['Name'] for d in m.distributions())))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = set(json.loads(listing.stdout))
    assert installed & MEMBERS == wanted
    assert "moto" not in installed and "herd-devkit" not in installed
    helped = subprocess.run(
        [str(tmp_path / ".venv" / "bin" / "herd"), "--help"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    assert helped.returncode == 0, helped.stderr
    offered = {line.split()[1] for line in helped.stdout.splitlines() if line.startswith("│ ")} - {
        "--help",
        "--install-completion",
        "--show-completion",
    }
    assert offered == commands


def test_the_operator_never_loads_the_devkit() -> None:
    """`herd operator run` loads the handlers; nothing of the devkit (local platform, cost)
    may come with them, even in a checkout where the devkit is installed."""
    code = (
        "import sys, herd_operator.cli, herd_operator.main, herd_api.main, herd_api.cli; "
        "print([m for m in sys.modules if m.startswith(('herd_devkit', 'moto'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
