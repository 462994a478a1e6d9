"""The API's pure parts: the client address behind proxies, the bounded per-client limiter and
the signed tokens of verification links."""

from __future__ import annotations

import pytest

from herd_api.core.clientaddr import client_address
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
