"""The API's pure parts: the client address behind proxies, the bounded per-client limiter and
the signed tokens of verification links."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from herd_api.api.deps import SignupBudget, spend_signup_budget
from herd_api.core.clientaddr import client_address, client_ip
from herd_api.core.config import Settings
from herd_api.core.ratelimit import KeyedLimiter
from herd_api.signuptokens import STEP, ExpiredToken, InvalidToken, SignupTokens
from herd_api.verifymail import link


def test_the_client_is_the_right_most_untrusted_hop() -> None:
    # No trusted proxy: the header is the client's own writing and is ignored.
    assert client_address("192.0.2.1", ["198.51.100.9"], 0) == "192.0.2.1"
    # One proxy (the ALB) appended the address it saw; the left is whatever the client sent.
    assert client_address("10.0.0.5", ["198.51.100.9, 203.0.113.7"], 1) == "203.0.113.7"
    assert client_address("10.0.0.5", ["198.51.100.9", "203.0.113.7"], 1) == "203.0.113.7"
    # Two proxies (CDN then ALB): the CDN's entry is the client.
    assert client_address("10.0.0.5", ["1.1.1.1, 203.0.113.7, 192.0.2.50"], 2) == "203.0.113.7"
    # Fewer entries than proxies: the left-most one was still written by a proxy of ours.
    assert client_address("10.0.0.5", ["203.0.113.7"], 2) == "203.0.113.7"
    # No header: the peer.
    assert client_address("192.0.2.1", [], 1) == "192.0.2.1"


def test_garbage_and_ipv6_cannot_mint_new_keys() -> None:
    assert client_address("192.0.2.1", ["x, not-an-ip"], 1) == "192.0.2.1"
    assert client_address("10.0.0.5", ["2001:db8:1:2::1"], 1) == "2001:db8:1:2::/64"
    assert client_address("10.0.0.5", ["2001:db8:1:2:ffff::9"], 1) == "2001:db8:1:2::/64"
    assert client_address("10.0.0.5", ["::ffff:203.0.113.7"], 1) == "203.0.113.7"


def test_the_clients_ip_is_its_own_address_not_its_key() -> None:
    """What a CAPTCHA service is told (remoteip): the address, where the rate limit keys an
    IPv6 client by its /64; nothing when the hop is not an address."""
    assert client_ip("10.0.0.5", ["2001:db8:1:2::1"], 1) == "2001:db8:1:2::1"
    assert client_ip("10.0.0.5", ["198.51.100.9, 203.0.113.7"], 1) == "203.0.113.7"
    assert client_ip("10.0.0.5", ["not-an-ip"], 1) is None
    assert client_ip("testclient", [], 0) is None


def test_a_signup_refused_for_all_clients_spends_nothing_of_its_clients_share() -> None:
    settings = Settings(
        signup_global_burst=1,
        signup_global_rate=0.001,
        signup_client_burst=1,
        signup_client_rate=0.0001,
    )
    budget = SignupBudget(settings)
    spend_signup_budget(budget, "203.0.113.1")  # the last signup of all
    with pytest.raises(HTTPException) as refused:
        spend_signup_budget(budget, "203.0.113.2")
    assert refused.value.status_code == 429 and "all clients" in str(refused.value.detail)
    assert budget.clients.check("203.0.113.2") == 0.0  # its one token is still there
    assert budget.clients.check("203.0.113.1") > 0  # the first one's was spent


def test_a_client_share_of_exactly_a_tenth_is_allowed() -> None:
    # 0.21 / 10 is 0.020999... in floats: a strict comparison refused it.
    assert Settings(signup_global_rate=0.21, signup_client_rate=0.021).signup_client_rate
    with pytest.raises(ValueError, match="at most a tenth"):
        Settings(signup_global_rate=0.21, signup_client_rate=0.0211)


def test_a_flood_of_new_clients_never_resets_a_limited_one() -> None:
    limiter = KeyedLimiter(rate=0.001, burst=2, max_clients=100)
    assert limiter.check("victim-of-limit") == 0.0
    assert limiter.check("victim-of-limit") == 0.0
    assert limiter.check("victim-of-limit") > 0  # limited
    for i in range(1000):
        limiter.check(f"flood-{i}")
        if i % 10 == 0:
            # The limited client keeps coming back: it stays remembered, and limited.
            assert limiter.check("victim-of-limit") > 0
    assert len(limiter) == 100


def test_the_limiter_forgets_the_least_recent_client_first() -> None:
    limiter = KeyedLimiter(rate=0.001, burst=1, max_clients=3)
    for key in ("a", "b", "c"):
        assert limiter.check(key) == 0.0
    assert limiter.check("a") > 0  # a is the most recent now
    assert limiter.check("d") == 0.0  # b, the least recent, is forgotten
    assert limiter.check("a") > 0
    assert limiter.check("c") > 0
    assert limiter.check("b") == 0.0  # forgotten: a full bucket again


SPEC = {
    "displayName": "Acme",
    "slug": "acme",
    "adminEmail": "a@acme.example.com",
    "plan": "starter",
}
KEY = "unit-test-signup-token-key-0123456789"


def test_a_token_carries_its_signup_and_expires_at_a_step_after_its_ttl() -> None:
    tokens = SignupTokens(KEY, 86_400)
    now = 1_800_000_100.0  # 100 s into a step
    pending = tokens.issue(SPEC, "key-1", now)
    assert pending.expires % STEP == 0 and 0 <= pending.expires - (now + 86_400) < STEP
    # Asked again within the step: the very same token (so one email, by its job's key).
    assert tokens.token(tokens.issue(SPEC, "key-1", now + 30)) == tokens.token(pending)
    read = tokens.read(tokens.token(pending), now + 86_399)
    assert (read.spec, read.idempotency_key) == (SPEC, "key-1")
    with pytest.raises(ExpiredToken):
        tokens.read(tokens.token(pending), pending.expires)
    # Nothing in a link that SES would escape in a {{placeholder}}.
    url = link("https://api.example.com/", tokens.token(pending))
    assert url.startswith("https://api.example.com/#verify/v1.") and not set("=&<>'\"`") & set(url)


def test_a_token_made_or_changed_without_the_key_is_refused() -> None:
    tokens = SignupTokens(KEY, 86_400)
    token = tokens.token(tokens.issue(SPEC, None))
    version, payload, mac = token.split(".")
    theirs = SignupTokens("x" * 32, 86_400)
    changed = theirs.token(theirs.issue({**SPEC, "slug": "evil"}, None)).split(".")[1]
    for bad in (
        theirs.token(theirs.issue(SPEC, None)),  # another key
        f"{version}.{changed}.{mac}",  # another signup under this signature
        f"v2.{payload}.{mac}",
        f"{version}.{payload}",
        token + "A",
        "x" * 5000,
        "",
    ):
        with pytest.raises(InvalidToken):
            tokens.read(bad)
    assert "unit-test" not in repr(tokens)
    with pytest.raises(ValueError):
        SignupTokens("short", 86_400)


def test_the_kubernetes_client_speaks_as_its_configuration_and_renews_a_rejected_token() -> None:
    """herd_api.kubeapi against a small HTTP server on loopback: the configuration's bearer
    token on every request, asked again (not per request) after a 401 and the request tried
    once more; 404 is None for a read, another error an ApiException, no answer status 0."""
    import asyncio

    from aiohttp import web
    from kubernetes.client import Configuration
    from kubernetes.client.exceptions import ApiException

    from herd_api.kubeapi import MERGE_PATCH, KubeApi

    seen: list[tuple[str, str, str | None, str]] = []
    valid = {"Bearer second"}

    async def handle(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        seen.append((request.method, request.path, auth, request.content_type))
        if auth not in valid:
            return web.json_response({"kind": "Status"}, status=401)
        if request.path.endswith("/missing"):
            return web.json_response({"kind": "Status"}, status=404)
        if request.path.endswith("/taken"):
            return web.json_response({"kind": "Status", "reason": "AlreadyExists"}, status=409)
        return web.json_response({"path": request.path, "body": await request.text()})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        tokens = iter(["first", "second", "third"])
        asked: list[str] = []

        def refresh(cfg: Configuration) -> None:  # as a kubeconfig's or token file's hook
            asked.append(cfg.api_key["authorization"])
            cfg.api_key["authorization"] = next(tokens)

        cfg = Configuration(host=f"http://127.0.0.1:{port}")
        cfg.api_key = {"authorization": "none"}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        cfg.refresh_api_key_hook = refresh
        kube = KubeApi(cfg)
        try:
            # "first" is refused: asked again, "second" goes through; then kept.
            assert (await kube.get("/api/v1/x"))["path"] == "/api/v1/x"  # type: ignore[index]
            assert await kube.get("/api/v1/missing") is None
            patched = await kube.merge_patch("/api/v1/x", {"a": 1})
            assert patched["body"] == '{"a":1}'
            with pytest.raises(ApiException) as refused:
                await kube.create("/api/v1/taken", {})
            assert refused.value.status == 409 and "AlreadyExists" in str(refused.value.body)
        finally:
            await kube.close()
            await runner.cleanup()
        assert len(asked) == 2  # once at first, once after the 401: not per request
        assert [a for _, _, a, _ in seen] == ["Bearer first"] + ["Bearer second"] * 4
        assert seen[3][3] == MERGE_PATCH
        gone = KubeApi(cfg)
        try:
            with pytest.raises(ApiException) as unanswered:
                await gone.get("/api/v1/x")
            assert unanswered.value.status == 0
        finally:
            await gone.close()

    asyncio.run(scenario())
