"""The operator's log as the chart runs it (`--json-logs`): one JSON object per line, each
message once, so that a log pipeline can parse all of it."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import OperatorProcess


def test_json_logs_are_one_json_object_per_line_each_once(
    operator_env: dict[str, str], namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"
    # An empty namespace of its own: the session's operator reconciles everything else.
    proc = OperatorProcess(
        args=("operator", "run", "--json-logs", "--namespace", namespace),
        env={
            **operator_env,
            "HERD_WEBHOOK_PORT": "0",
            "HERD_METRICS_PORT": "0",
            "HERD_STATE_DIR": str(tmp_path / "state"),
            "HERD_AWS_NAME_PREFIX": f"logs-{namespace}-",
        },
        log=log,
    ).start()
    proc.stop()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    messages = [r.get("message", "") for r in records]
    assert sum("herd operator ready" in m for m in messages) == 1, messages
