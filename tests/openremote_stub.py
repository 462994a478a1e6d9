"""A small local HTTP server that follows the OpenRemote Manager REST API the operator uses.

OpenRemote (manager + Keycloak + PostgreSQL/TimescaleDB) cannot run on our machines, so the
operator's client is tested against this stand-in for those endpoints only:

    POST   /auth/realms/master/protocol/openid-connect/token   (client_credentials)
    GET    /api/master/realm/{name}
    POST   /api/master/realm                                   {name, displayName, enabled}
    DELETE /api/master/realm/{name}
    POST   /api/master/user/{realm}/users                      {username, email, enabled}
    POST   /api/master/user/query                              {realmPredicate, usernames}
    PUT    /api/master/user/{realm}/userRoles/{id}/openremote  ["role", ...]
    GET    /api/master/configuration/manager                   the Manager UI's config
    PUT    /api/master/configuration/manager                   {realms: {name: {logo, ...}}}

Every /api call needs the bearer token from the token endpoint. `after(action, fn)` runs fn
once the action has taken effect, before the answer (to kill the caller exactly there, or
hold it while another request comes in).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .httpserver import LoopbackServer, reply

CLIENT_ID, CLIENT_SECRET = "herd-provisioner", "stub-secret"


@dataclass
class Realm:
    name: str
    display_name: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class OpenRemoteStub(LoopbackServer):
    realms: dict[str, Realm] = field(default_factory=dict)
    manager_config: dict[str, Any] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    hooks: dict[str, list[Callable[[], None]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def after(self, action: str, fn: Callable[[], None]) -> None:
        """Run fn once, right after the next `action` (realm, user, roles, delete-realm)."""
        with self._lock:
            self.hooks.setdefault(action, []).append(fn)

    def _fire(self, action: str) -> None:
        with self._lock:
            fns = self.hooks.pop(action, [])
        for fn in fns:
            fn()

    def start(self) -> OpenRemoteStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, code: int, payload: Any = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                reply(self, code, body, [("Content-Type", "application/json")])

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                return auth.startswith("Bearer ") and auth[7:] in stub.tokens

            def _route(self) -> None:
                body = self._body()
                path = urllib.parse.urlsplit(self.path).path
                if path == "/auth/realms/master/protocol/openid-connect/token":
                    form = urllib.parse.parse_qs(body.decode())
                    if (
                        form.get("grant_type") != ["client_credentials"]
                        or form.get("client_id") != [CLIENT_ID]
                        or form.get("client_secret") != [CLIENT_SECRET]
                    ):
                        self._send(401, {"error": "unauthorized_client"})
                        return
                    token = uuid.uuid4().hex
                    stub.tokens.add(token)
                    self._send(200, {"access_token": token, "expires_in": 300})
                    return
                if not path.startswith("/api/master/"):
                    self._send(404)
                    return
                if not self._authorized():
                    self._send(401)
                    return
                self._api(self.command, path[len("/api/master/") :], body)

            def _api(self, method: str, path: str, body: bytes) -> None:
                data = json.loads(body) if body else None
                with stub._lock:
                    realms = stub.realms
                if method == "POST" and path == "realm":
                    if data["name"] in realms:
                        self._send(409)
                        return
                    realms[data["name"]] = Realm(data["name"], data.get("displayName", ""))
                    stub._fire("realm")
                    self._send(204)
                elif m := re.fullmatch(r"realm/([^/]+)", path):
                    name = m.group(1)
                    if method == "GET":
                        self._send(
                            200 if name in realms else 404,
                            {"name": name} if name in realms else None,
                        )
                    elif method == "DELETE":
                        found = realms.pop(name, None)
                        stub._fire("delete-realm")
                        self._send(204 if found else 404)
                elif method == "POST" and (m := re.fullmatch(r"user/([^/]+)/users", path)):
                    realm = realms.get(m.group(1))
                    if realm is None:
                        self._send(404)
                    elif any(u["username"] == data["username"] for u in realm.users.values()):
                        self._send(409)
                    else:
                        user = {**data, "id": uuid.uuid4().hex, "roles": []}
                        realm.users[user["id"]] = user
                        stub._fire("user")
                        self._send(200, user)
                elif path == "configuration/manager" and method in ("GET", "PUT"):
                    if method == "PUT":
                        with stub._lock:
                            stub.manager_config = dict(data)
                        stub._fire("manager-config")
                        self._send(204)
                    else:
                        with stub._lock:
                            config = json.loads(json.dumps(stub.manager_config))
                        stub._fire("manager-config-read")
                        self._send(200, config)
                elif method == "POST" and path == "user/query":
                    realm = realms.get((data.get("realmPredicate") or {}).get("name", ""))
                    names = {p["value"] for p in data.get("usernames", [])}
                    users = [
                        u for u in (realm.users.values() if realm else []) if u["username"] in names
                    ]
                    self._send(200, users)
                elif method == "PUT" and (
                    m := re.fullmatch(r"user/([^/]+)/userRoles/([^/]+)/openremote", path)
                ):
                    realm = realms.get(m.group(1))
                    user = realm.users.get(m.group(2)) if realm else None
                    if user is None:
                        self._send(404)
                        return
                    user["roles"] = list(data)
                    stub._fire("roles")
                    self._send(204)
                else:
                    self._send(404)

            do_GET = do_POST = do_PUT = do_DELETE = _route

        self.serve(Handler)
        return self
