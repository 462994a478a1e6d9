"""Rules of AWS that moto 5.2 does not enforce, as WSGI middleware in front of moto.

Herd's security rests on some of them, so the local AWS must hold them or a test of that
security proves nothing:

- **An app client's WriteAttributes** (Cognito `UpdateUserAttributes`, with a user's access
  token): the client the token was issued to decides which attributes the user may write
  on themselves. Any other attribute: `NotAuthorizedException`, "A client attempted to write
  unauthorized attribute", nothing written. A client without WriteAttributes gets AWS's
  default: every mutable attribute, custom ones included (why Herd never leaves them empty).
- **An app client's ReadAttributes** (Cognito `GetUser`): only the attributes the client may
  read are answered, when it names them (`sub` always).
- **An app client's CreationDate and LastModifiedDate** (Create/Describe/UpdateUserPoolClient):
  the operator holds a client's CreationDate against its own claim to tell a client it made
  from one that was there before.
- **SQS's batch limits** (DeleteMessageBatch, ChangeMessageVisibilityBatch; moto holds them
  for SendMessageBatch only): at most 10 entries (`TooManyEntriesInBatchRequest`), their Ids
  distinct (`BatchEntryIdsNotDistinct`), nothing changed. The email worker batches its deletes.

The rules read moto's own state (which token belongs to which client, the pool's schema), so
they run inside moto_serial's lock, in the same process.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.cognitoidp.models import CognitoIdpUserPoolAttribute, cognitoidp_backends

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
COGNITO = "AWSCognitoIdentityProviderService."
SQS = "AmazonSQS."
SQS_BATCH_MAX = 10  # entries per batch request (SQS developer guide, quotas for messages)
UNAUTHORIZED_WRITE = "A client attempted to write unauthorized attribute"


def enforced(app: WSGIApp) -> WSGIApp:
    """`app` with the rules above; every other request goes through untouched."""

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target == f"{COGNITO}UpdateUserAttributes":
            return _update_user_attributes(app, environ, start_response)
        if target == f"{COGNITO}GetUser":
            return _get_user(app, environ, start_response)
        if target in (f"{COGNITO}CreateUserPoolClient", f"{COGNITO}UpdateUserPoolClient"):
            return _dated(app, environ, start_response, target.endswith("CreateUserPoolClient"))
        if target in (f"{SQS}DeleteMessageBatch", f"{SQS}ChangeMessageVisibilityBatch"):
            return _sqs_batch(app, environ, start_response)
        return app(environ, start_response)

    return handle


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON body, read once and put back for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _token_owner(access_token: str) -> tuple[Any, Any] | None:
    """(user pool, app client) of a live access token, as moto issued it; None when moto
    does not know the token (moto then answers NotAuthorizedException itself)."""
    for by_region in cognitoidp_backends.values():
        for region, backend in by_region.items():
            if region == "global":
                continue
            for pool in backend.user_pools.values():
                owner = pool.access_tokens.get(access_token)
                if owner is not None:
                    client = pool.clients.get(owner[0])
                    return (pool, client) if client is not None else None
    return None


def writable(pool: Any, client: Any) -> set[str]:
    """What a user may write on themselves through `client`: its WriteAttributes, or (none
    set) AWS's default, every mutable attribute of the pool, custom ones included. moto keeps
    only the attributes a pool was created with in its schema, so the standard ones are
    added from moto's standard schema."""
    named = client.extended_config.get("WriteAttributes") or []
    if named:
        return set(named)
    mutable = {n for n, s in CognitoIdpUserPoolAttribute.STANDARD_SCHEMA.items() if s["Mutable"]}
    for name, attribute in pool.schema_attributes.items():
        if attribute.mutable and not attribute.developer_only:
            mutable.add(name)
        else:
            mutable.discard(name)
    return mutable


def readable(client: Any) -> set[str] | None:
    """What `client` may read of its user; None: everything (no ReadAttributes set)."""
    named = client.extended_config.get("ReadAttributes") or []
    return {*named, "sub"} if named else None


def _update_user_attributes(
    app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    body = _body(environ)
    owner = _token_owner(str(body.get("AccessToken") or ""))
    if owner is not None:
        allowed = writable(*owner)
        names = {str(a.get("Name")) for a in body.get("UserAttributes") or [] if a}
        if names - allowed:
            return _error(start_response, "NotAuthorizedException", UNAUTHORIZED_WRITE)
    return app(environ, start_response)


def _get_user(
    app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    body = _body(environ)
    owner = _token_owner(str(body.get("AccessToken") or ""))
    allowed = readable(owner[1]) if owner is not None else None
    if allowed is None:
        return app(environ, start_response)
    answer = Answer.of(app, environ)
    if answer.ok:
        user = json.loads(answer.raw)
        user["UserAttributes"] = [a for a in user.get("UserAttributes", []) if a["Name"] in allowed]
        answer.raw = json.dumps(user).encode()
    return answer.send(start_response)


def _sqs_batch(
    app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    entries = _body(environ).get("Entries") or []
    if len(entries) > SQS_BATCH_MAX:
        return _sqs_error(
            start_response,
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {SQS_BATCH_MAX}. "
            f"You have sent {len(entries)}.",
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = str((entry or {}).get("Id"))
        if entry_id in seen:
            return _sqs_error(
                start_response, "BatchEntryIdsNotDistinct", f"Id {entry_id} repeated."
            )
        seen.add(entry_id)
    return app(environ, start_response)


def _dated(
    app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any], created: bool
) -> Iterable[bytes]:
    """moto keeps no dates for app clients: stamp them on moto's client (Describe answers
    them from there on) and on this answer, as epoch seconds (the JSON protocol's form)."""
    answer = Answer.of(app, environ)
    if answer.ok:
        body = json.loads(answer.raw)
        found = body.get("UserPoolClient") or {}
        client = _client(str(found.get("UserPoolId")), str(found.get("ClientId")))
        if client is not None:
            now = round(time.time(), 3)  # as moto serializes it
            dates = {"LastModifiedDate": now, **({"CreationDate": now} if created else {})}
            client.extended_config.update(dates)
            found.update(dates)
            answer.raw = json.dumps(body).encode()
    return answer.send(start_response)


def _client(pool_id: str, client_id: str) -> Any:
    for by_region in cognitoidp_backends.values():
        for region, backend in by_region.items():
            pool = None if region == "global" else backend.user_pools.get(pool_id)
            if pool is not None and client_id in pool.clients:
                return pool.clients[client_id]
    return None


class Answer:
    """moto's whole answer to a request, to look at (and change) before it is sent on."""

    def __init__(self, status: str, headers: list[tuple[str, str]], raw: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, raw

    @classmethod
    def of(cls, app: WSGIApp, environ: dict[str, Any]) -> Answer:
        answered: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *_: Any) -> Callable[..., Any]:
            answered.update(status=status, headers=headers)
            return lambda _data: None  # moto writes nothing through it

        result = app(environ, keep)
        try:
            raw = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return cls(answered["status"], answered["headers"], raw)

    @property
    def ok(self) -> bool:
        return self.status.startswith("200")

    def send(self, start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
        start_response(self.status, [*headers, ("Content-Length", str(len(self.raw)))])
        return [self.raw]


def _error(start_response: Callable[..., Any], code: str, message: str) -> Iterable[bytes]:
    """An error as Cognito's JSON protocol answers it (botocore reads `__type`)."""
    raw = json.dumps({"__type": code, "message": message}).encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", code),
            ("Content-Length", str(len(raw))),
        ],
    )
    return [raw]


def _sqs_error(start_response: Callable[..., Any], code: str, message: str) -> Iterable[bytes]:
    """An error as SQS's JSON protocol answers it: the shape's name in `__type`, the query
    API's code (what botocore and SQS's own docs name) in `x-amzn-query-error`."""
    raw = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("x-amzn-query-error", f"AWS.SimpleQueueService.{code};Sender"),
            ("Content-Length", str(len(raw))),
        ],
    )
    return [raw]
