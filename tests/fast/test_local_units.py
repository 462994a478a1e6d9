"""Unit tests of the local platform's pieces that need no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from herd_devkit.local import certs
from herd_devkit.local.tools import ToolsMissing, binary, k8s_assets
from herd_devkit.settings import Settings


def _fake_tools(root: Path, version: str, names: tuple[str, ...]) -> Path:
    folder = root / "k8s" / f"{version}-linux-amd64"
    folder.mkdir(parents=True)
    for n in names:
        (folder / n).write_text("#!/bin/sh\n")
        (folder / n).chmod(0o755)
    return folder


ALL = ("etcd", "kube-apiserver", "kube-controller-manager")


def test_newest_cached_version_wins(tmp_path: Path) -> None:
    _fake_tools(tmp_path, "1.9.0", ALL)
    newest = _fake_tools(tmp_path, "1.36.3", ALL)
    _fake_tools(tmp_path, "1.40.0", ("etcd",))  # incomplete: ignored
    s = Settings(tools_dir=tmp_path, kubebuilder_assets=None)
    assert k8s_assets(s) == newest
    assert binary("etcd", s) == newest / "etcd"


def test_kubebuilder_assets_wins(tmp_path: Path) -> None:
    _fake_tools(tmp_path, "1.36.3", ALL)
    own = _fake_tools(tmp_path / "own", "1.30.0", ALL)
    assert k8s_assets(Settings(tools_dir=tmp_path, kubebuilder_assets=own)) == own


def test_missing_tools_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ToolsMissing, match="make tools"):
        k8s_assets(Settings(tools_dir=tmp_path, kubebuilder_assets=None))
    partial = _fake_tools(tmp_path, "1.36.3", ("etcd",))
    with pytest.raises(ToolsMissing, match="kube-apiserver"):
        k8s_assets(Settings(tools_dir=tmp_path, kubebuilder_assets=partial))


def test_serving_and_client_certs_chain_to_their_cas() -> None:
    ca = certs.new_ca("ca")
    serving = certs.issue(ca, "apiserver", server=True, dns=("localhost",), ips=("127.0.0.1",))
    serving.cert.verify_directly_issued_by(ca.cert)
    sans = serving.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    admin = certs.issue(ca, "admin", orgs=("system:masters",))
    orgs = admin.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    assert b"BEGIN PRIVATE KEY" in admin.key_pem  # PKCS#8


def test_env_file_is_shell_safe_and_reads_back(tmp_path: Path) -> None:
    """What `make up` writes survives a real shell (JSON, spaces, quotes) and our own reader."""
    import json
    import subprocess

    from herd_devkit.local.platform import Platform, read_env

    state = tmp_path / "state with space"
    platform = Platform(settings=Settings(state_dir=state), repo_root=tmp_path)
    (tmp_path / "kc").write_text(
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n"
    )
    tricky = {
        "HERD_GIT_URL_REWRITES": json.dumps({"file:///o r/origin.git": "https://x/y.git"}),
        "HERD_API_URL": "http://127.0.0.1:1",
        "ODD": "it's $HOME `x`",
        "KUBECONFIG_DEV": str(tmp_path / "kc"),
        "KUBECONFIG_PROD": str(tmp_path / "kc"),
    }
    platform._write_env(tricky)
    shell = subprocess.run(
        ["bash", "-c", f"set -a; . '{state}/env'; set +a; env -0"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert shell.stderr == ""
    seen = dict(i.split("=", 1) for i in shell.stdout.split("\0") if "=" in i)
    for key, value in tricky.items():
        assert seen[key] == value
    assert seen["PATH"] == f"{state}/bin:/usr/bin:/bin"
    assert seen["KUBECONFIG"] == str(state / "kubeconfig")
    assert read_env(state / "env") == {
        k: v for k, v in seen.items() if k in read_env(state / "env")
    }
    assert read_env(state / "env")["ODD"] == tricky["ODD"]
