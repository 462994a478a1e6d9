"""The workers chart runs the thumbnail worker: its own Deployment (no selector of the email
worker's picks up its pods), the buckets, queue and public URL as values."""

from __future__ import annotations

import pytest

from .charts import helm, template


def thumbnail_deployment(*args: str) -> dict[str, object]:
    rendered = template("herd-workers", "-f", "charts/herd-workers/ci/prod-values.yaml", *args)
    found = [
        o for o in rendered if o["kind"] == "Deployment" and "thumbnails" in o["metadata"]["name"]
    ]
    assert len(found) <= 1
    return found[0] if found else {}


def test_the_thumbnail_worker_runs_with_its_buckets_and_public_url() -> None:
    rendered = template(
        "herd-workers",
        "-f",
        "charts/herd-workers/ci/prod-values.yaml",
        "--set",
        "thumbnails.publicUrl=https://logos.herd-itt.com",
    )
    deployments = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Deployment"}
    thumbs = deployments["t-herd-workers-thumbnails"]
    container = thumbs["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["worker", "run", "--kind", "thumbnails"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HERD_LOGO_PUBLIC_URL"] == "https://logos.herd-itt.com"
    assert env["HERD_LOGO_RAW_BUCKET"] == "prod-herd-222222222222-logos-raw"
    assert env["HERD_THUMBNAIL_QUEUE_URL"].endswith("/prod-herd-thumbnails")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Same ServiceAccount (IAM role) as the email worker; selectors that never overlap.
    email = deployments["t-herd-workers"]
    assert (
        thumbs["spec"]["template"]["spec"]["serviceAccountName"]
        == email["spec"]["template"]["spec"]["serviceAccountName"]
    )
    email_selector = email["spec"]["selector"]["matchLabels"].items()
    assert not email_selector <= thumbs["spec"]["template"]["metadata"]["labels"].items()
    for obj in rendered:
        selector = (obj.get("spec") or {}).get("selector") or {}
        labels = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
        if obj is not thumbs and labels and obj["kind"] != "NetworkPolicy":
            assert not labels.items() <= thumbs["spec"]["template"]["metadata"]["labels"].items(), (
                obj["kind"]
            )


def test_its_pods_have_a_network_policy_that_admits_nobody() -> None:
    rendered = template("herd-workers", "-f", "charts/herd-workers/ci/dev-values.yaml")
    thumbs = next(
        o for o in rendered if o["kind"] == "Deployment" and "thumb" in o["metadata"]["name"]
    )
    labels = thumbs["spec"]["template"]["metadata"]["labels"].items()
    policies = [
        o
        for o in rendered
        if o["kind"] == "NetworkPolicy"
        and o["spec"]["podSelector"]["matchLabels"].items() <= labels
    ]
    assert len(policies) == 1 and policies[0]["spec"]["ingress"] == []
    assert policies[0]["spec"]["policyTypes"] == ["Ingress"]


def test_it_can_be_turned_off() -> None:
    assert thumbnail_deployment("--set", "thumbnails.enabled=false") == {}


@pytest.mark.parametrize(
    "bad",
    ["thumbnails.publicUrl=http://logos.example.com", "thumbnails.rawBucket=Bad_Bucket"],
)
def test_the_schema_refuses_bad_values(bad: str) -> None:
    result = helm(
        "template",
        "t",
        "charts/herd-workers",
        "-f",
        "charts/herd-workers/ci/prod-values.yaml",
        "--set",
        bad,
        check=False,
    )
    assert result.returncode != 0 and "thumbnails" in result.stderr, result.stderr
