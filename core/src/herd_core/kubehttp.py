"""Plain JSON requests to the API server over aiohttp, for the programs that make many of
them (the API's signups, the operator's syncs): the answer a dict, no generated models.

Who asks is the loaded kubernetes Configuration's: its host, TLS (`tls`) and the auth
headers the caller takes from it. A failure is an ApiException, as the sync client raises
(status 0: there was no answer), and never carries the request's headers: the bearer token
is among them, and these exceptions end in status conditions, events and logs.
"""

from __future__ import annotations

import functools
import json
import ssl
from typing import Any

import aiohttp
from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException
from yarl import URL

Answer = dict[str, Any] | ApiException
_Tls = tuple[bool, str | None, str | bytes | None, str | None, str | None, bool | None]


def tls(cfg: Configuration) -> ssl.SSLContext | bool:
    """The TLS the kubernetes client's urllib3 pool would use for `cfg`."""
    return _tls_context(
        (
            bool(cfg.verify_ssl),
            cfg.ssl_ca_cert,
            cfg.ca_cert_data,
            cfg.cert_file,
            cfg.key_file,
            cfg.assert_hostname,
        )
    )


@functools.lru_cache(maxsize=16)
def _tls_context(key: _Tls) -> ssl.SSLContext | bool:
    """Built once per configuration: loading the CA costs milliseconds, a batch may be small."""
    verify, ca_file, ca_data, cert_file, key_file, assert_hostname = key
    if not verify:
        return False
    ctx = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    if assert_hostname is False:
        ctx.check_hostname = False
    return ctx


async def send(
    session: aiohttp.ClientSession,
    cfg: Configuration,
    method: str,
    path: str,
    query: Any = None,
    data: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Answer:
    """One request: its JSON answer, or the ApiException it comes to (`timeout`: seconds
    for the whole of it; None: the session's)."""
    try:
        async with session.request(
            method,
            URL(cfg.host + path, encoded=True),
            params=query,
            data=data,
            headers=headers,
            server_hostname=cfg.tls_server_name or None,
            timeout=aiohttp.ClientTimeout(total=timeout) if timeout else session.timeout,
        ) as response:
            raw = await response.read()
    except aiohttp.ClientResponseError as err:
        # Its repr holds the request's headers: only the status and message go on.
        return ApiException(status=err.status, reason=f"bad answer: {err.message}")
    except (aiohttp.ClientError, TimeoutError) as err:
        return ApiException(status=0, reason=f"no answer: {type(err).__name__}: {err}")
    if not 200 <= response.status <= 299:
        return ApiException(
            status=response.status, reason=response.reason, body=raw.decode("utf-8", "replace")
        )
    try:
        out: dict[str, Any] = json.loads(raw)
    except ValueError:
        return ApiException(status=response.status, reason="bad answer: not JSON")
    return out
