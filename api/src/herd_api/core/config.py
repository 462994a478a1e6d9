"""The API package's settings: one pydantic-settings class for the API and the worker.

It extends the settings every Herd program shares (herd_core.settings: AWS endpoint, region,
queue, table, user pool, tenants namespace) with the API's and the worker's own.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, model_validator

from herd_core.settings import Settings as CoreSettings


class Settings(CoreSettings):
    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str = Field("http://127.0.0.1:8000", description="Base of status URLs")
    cors_origins: list[str] = Field(default_factory=list)
    signup_rate: float = Field(
        1.0,
        gt=0,
        description="Requests per second per client to the public POST routes (signup, "
        "verification link, sign-in, logo upload)",
    )
    signup_burst: int = Field(10, ge=1, description="Such requests a client may make at once")
    signup_client_rate: float = Field(
        1 / 600,
        gt=0,
        description="Well-formed signups per second from one client (per replica), out of the "
        "global budget: at most a tenth of signup_global_rate, so one address never takes "
        "the signups of everyone else",
    )
    signup_client_burst: int = Field(
        10,
        ge=1,
        description="Well-formed signups one client may make at once (per replica): a few "
        "people behind one address (an office) sign up at once",
    )
    signup_recipient_rate: float = Field(
        1 / 3600,
        gt=0,
        description="Verification emails per second to one address (per replica): past it a "
        "signup is answered as any other and sends nothing (no one can mail-bomb an address "
        "through the signup form, whatever the number of clients)",
    )
    signup_recipient_burst: int = Field(
        3, ge=1, description="Verification emails one address may get at once (per replica)"
    )
    signup_global_rate: float = Field(
        0.1,
        gt=0,
        description="Signups per second from all clients together (per API replica), beside "
        "the per-client limit: a flood from many addresses cannot provision without bound",
    )
    signup_global_burst: int = Field(
        200, ge=1, description="Signups all clients together may make at once (per replica)"
    )
    signup_verify_url: str | None = Field(
        None,
        description="siteverify URL of a CAPTCHA service (Cloudflare Turnstile, hCaptcha, "
        "reCAPTCHA): each signup's X-Verification-Token is checked there before anything is "
        "provisioned. Unset: no verification (herd_api.core.verification)",
    )
    signup_verify_secret: str | None = Field(
        None, repr=False, description="The CAPTCHA service's secret key"
    )
    signup_verify_timeout: float = Field(
        5.0, gt=0, le=30, description="Seconds a verification may take; past it, 503"
    )
    # N9: a signup only asks; the link in the one email it sends makes the Tenant.
    signup_email_verification: bool = Field(
        True,
        description="Hold each signup until the link in the verification email sent to its "
        "adminEmail is followed: only then is its Tenant made (and AWS touched beyond that one "
        "email). Off: the Tenant is made at once (load benches)",
    )
    signup_token_key: SecretStr | None = Field(
        None,
        repr=False,  # its length is checked at start-up (main.check): an error here would print it
        description="HMAC key of the verification links (at least 32 characters, from a "
        "Secret). Required while email verification is on; a new key voids the links out",
    )
    signup_token_ttl: int = Field(
        86_400, ge=600, le=7 * 86_400, description="Seconds a verification link works"
    )
    signup_verification_template: str = Field(
        "signup-verification",
        min_length=1,
        description="SESTemplate (in the tenants namespace) of the verification email",
    )
    signup_claim_ttl: float = Field(
        30.0,
        gt=0,
        description="Seconds an email claim waits for its Tenant; after that a signup whose "
        "Tenant never came no longer blocks the email",
    )
    trusted_proxies: int = Field(
        0,
        ge=0,
        le=10,
        description="Proxies in front that each append to X-Forwarded-For (the ALB: 1); the "
        "client is the entry that many hops from the right. 0: the socket peer",
    )
    max_body_bytes: int = Field(
        16_384, ge=1024, description="Largest request body; a larger one is 413, never parsed"
    )
    limiter_max_clients: int = Field(
        10_000, ge=1, description="Clients the signup limiter remembers (least recent go first)"
    )
    jwt_issuer: str | None = Field(None, description="Expected `iss`; default from the pool")
    jwks_url: str | None = Field(None, description="JWKS URL; default from the issuer")
    # Required by the API (checked at start-up; the worker does not use it): without it, a
    # token of any app client of the pool would do.
    admin_client_id: str | None = Field(None, description="App client of the admin page")
    admin_group: str = "admins"

    # Logos: presigned POSTs into the raw bucket; thumbnails in the processed one.
    logo_raw_bucket: str | None = Field(None, description="Bucket of uploads (raw/{slug}/...)")
    logo_bucket: str | None = Field(None, description="Bucket of thumbnails (logos/{slug}/...)")
    logo_public_url: str | None = Field(
        None,
        description="Base URL the thumbnails are served from (CloudFront in prod); default "
        "the processed bucket's own URL at the AWS endpoint",
    )
    logo_max_bytes: int = Field(2 * 1024 * 1024, ge=1, description="Largest upload accepted")
    logo_upload_expiry: int = Field(300, ge=30, le=3600, description="Presigned POST lifetime, s")
    logo_max_pixels: int = Field(
        25_000_000, ge=1, description="Largest image decoded (width x height); more is a bomb"
    )
    thumbnail_queue_url: str | None = Field(None, description="SQS queue of raw-bucket events")
    thumbnail_dlq_url: str | None = Field(None, description="Its dead-letter queue")

    # Worker
    worker_wait_seconds: int = Field(20, ge=0, le=20, description="SQS long-poll wait")
    worker_visibility_timeout: int = Field(
        60,
        ge=2,
        le=43200,
        description="Seconds a received message stays hidden (extended while its claim is held)",
    )
    worker_batch_size: int = Field(
        10, ge=1, le=10, description="Messages per receive (held hidden until handled)"
    )
    # 32: a message spends ~0.3 s on its five AWS and API-server calls when local AWS is
    # busy, so 16 in hand held a 50/s budget to ~46/s (bench/api.py).
    worker_concurrency: int = Field(
        32,
        ge=1,
        le=64,
        description="Messages an email worker handles at once (each waits on DynamoDB, SES "
        "and the API server; the shared budget still caps the send rate); it receives the "
        "next batch once fewer than this are in hand",
    )
    worker_retry_base: float = Field(2.0, gt=0, description="Backoff of a failed job, s")
    worker_claim_lease: float = Field(
        60.0,
        gt=0,
        description="Seconds a send claim holds unless renewed; at most the "
        "visibility timeout, so a dead worker's claim lapses before its message shows again. "
        "One SES send may take half of it (connect and answer), and starts only with that "
        "much of the lease ahead",
    )
    worker_max_send_rate: float | None = Field(
        None,
        gt=0,
        description="Emails per second for all workers of the environment "
        "together; default SES GetSendQuota's MaxSendRate",
    )
    worker_send_budget_key: str = Field(
        "budget#ses-send", min_length=1, description="Item of the shared send budget (jobs table)"
    )
    worker_dlq_interval: float = Field(30.0, gt=0, description="Seconds between DLQ depth reads")
    worker_port: int = Field(8090, ge=0, description="Worker /healthz and /metrics; 0: off")
    listen_host: str = Field(
        "127.0.0.1", description="Address the worker's server binds; 0.0.0.0 in a pod"
    )

    @model_validator(mode="after")
    def verifier_has_a_secret(self) -> Settings:
        if self.signup_verify_url and not self.signup_verify_secret:
            raise ValueError("HERD_SIGNUP_VERIFY_URL needs HERD_SIGNUP_VERIFY_SECRET")
        return self

    @model_validator(mode="after")
    def one_client_gets_a_share_of_the_budget(self) -> Settings:
        # With a margin for floats: 0.21 / 10 is 0.020999..., which refused 0.021.
        if self.signup_client_rate * 10 > self.signup_global_rate * (1 + 1e-9):
            raise ValueError(
                "HERD_SIGNUP_CLIENT_RATE must be at most a tenth of HERD_SIGNUP_GLOBAL_RATE: "
                "one client at its limit would otherwise take the signups of everyone else"
            )
        if self.signup_client_burst > self.signup_global_burst:
            raise ValueError("HERD_SIGNUP_CLIENT_BURST must not exceed HERD_SIGNUP_GLOBAL_BURST")
        return self

    @model_validator(mode="after")
    def lease_within_visibility(self) -> Settings:
        if self.worker_claim_lease > self.worker_visibility_timeout:
            raise ValueError(
                "HERD_WORKER_CLAIM_LEASE must not exceed HERD_WORKER_VISIBILITY_TIMEOUT: a dead "
                "worker's claim must lapse before its message is delivered again"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
