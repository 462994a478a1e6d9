"""The drift sweep's paginated list against a real API server and etcd: a sweep outlives its
continue token (etcd compacts every 5 minutes; 10,000 objects at drift_max_rate take longer)
and goes on with the list as it is now."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config

from herd_core.constants import GROUP, VERSION
from herd_devkit.local import crds
from herd_devkit.local.controlplane import ControlPlane
from herd_operator import drift

REPO = Path(__file__).resolve().parent.parent


def template(name: str) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SESTemplate",
        "metadata": {"name": name},
        "spec": {"subject": "Hi", "text": "Hello"},
    }


def test_a_sweep_goes_on_past_a_compacted_continue_token(
    uncached_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with config.new_client_from_config(config_file=str(uncached_plane.kubeconfig)) as api:
        crds.install(api, REPO / "charts" / "herd-operator" / "crds")
        custom = client.CustomObjectsApi(api)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "sweep"}})
        for name in ("a", "b", "c"):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, "sweep", "sestemplates", template(name)
            )
        monkeypatch.setattr(drift, "PAGE", 1)
        monkeypatch.setattr(drift.kube, "custom", lambda: custom)
        sweep = drift.listed("sestemplates", ["sweep"])
        assert next(sweep)["metadata"]["name"] == "a"  # page 1, and a continue token
        # Written after the first page, then compacted past: the token's revision is gone.
        d = custom.create_namespaced_custom_object(
            GROUP, VERSION, "sweep", "sestemplates", template("d")
        )
        compacted = httpx.post(
            f"{uncached_plane.etcd}/v3/kv/compaction",
            json={"revision": int(d["metadata"]["resourceVersion"]), "physical": True},
            timeout=30,
        )
        compacted.raise_for_status()
        with caplog.at_level(logging.INFO, logger=drift.log.name):
            rest = [item["metadata"]["name"] for item in sweep]
        # The rest, as the list is now (d too), each once; the 410 was met, not skipped.
        assert rest == ["b", "c", "d"]
        assert "a page expired" in caplog.text
