"""OpenRemote Manager REST API: realms and their admin users.

Authenticates with Keycloak's client-credentials grant (a master-realm service user with the
`admin` realm role). Tested against a local HTTP server that follows this API
(tests/openremote_stub.py), since OpenRemote itself cannot run here.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from herd_core.errors import InvalidSpec, Recoverable
from herd_operator.settings import Settings

# The Manager UI's one configuration document: the operator writes it one change at a time.
_MANAGER_CONFIG = threading.Lock()


class OpenRemote:
    def __init__(self, settings: Settings) -> None:
        if not settings.openremote_client_secret:
            raise InvalidSpec(
                "OpenRemote provisioning is on but no client secret is set "
                "(HERD_OPENREMOTE_CLIENT_SECRET)"
            )
        self._s = settings
        self._http = httpx.Client(base_url=settings.openremote_url.rstrip("/"), timeout=30)
        self._token: tuple[str, float] | None = None

    def _auth(self) -> dict[str, str]:
        if self._token is None or self._token[1] < time.monotonic() + 30:
            base = (self._s.openremote_keycloak_url or self._s.openremote_url).rstrip("/")
            response = self._call(
                httpx.post,
                f"{base}/auth/realms/master/protocol/openid-connect/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._s.openremote_client_id,
                    "client_secret": self._s.openremote_client_secret,
                },
            )
            body = response.json()
            self._token = (
                body["access_token"],
                time.monotonic() + float(body.get("expires_in", 60)),
            )
        return {"Authorization": f"Bearer {self._token[0]}"}

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> httpx.Response:
        try:
            response: httpx.Response = fn(*args, **kwargs)
        except httpx.HTTPError as err:
            raise Recoverable(f"OpenRemote unreachable: {err}") from err
        if response.status_code >= 500 or response.status_code == 429:
            raise Recoverable(f"OpenRemote answered {response.status_code}")
        if response.status_code in (401, 403):
            raise Recoverable(f"OpenRemote refused our credentials ({response.status_code})")
        return response

    def realm_exists(self, name: str) -> bool:
        response = self._call(self._http.get, f"/api/master/realm/{name}", headers=self._auth())
        return response.status_code == 200

    def create_realm(self, name: str, display_name: str) -> None:
        response = self._call(
            self._http.post,
            "/api/master/realm",
            headers=self._auth(),
            json={"name": name, "displayName": display_name, "enabled": True},
        )
        if response.status_code not in (200, 204, 409):
            raise InvalidSpec(
                f"OpenRemote refused realm {name}: {response.status_code} {response.text[:200]}"
            )

    def delete_realm(self, name: str) -> None:
        response = self._call(self._http.delete, f"/api/master/realm/{name}", headers=self._auth())
        if response.status_code not in (200, 204, 404):
            raise Recoverable(f"OpenRemote could not delete realm {name}: {response.status_code}")

    def find_user(self, realm: str, username: str) -> str | None:
        response = self._call(
            self._http.post,
            "/api/master/user/query",
            headers=self._auth(),
            json={
                "realmPredicate": {"name": realm},
                "usernames": [{"predicateType": "string", "match": "EXACT", "value": username}],
            },
        )
        if response.status_code != 200:
            return None
        users = [u for u in response.json() if u.get("username") == username]
        return str(users[0]["id"]) if users else None

    def create_user(self, realm: str, username: str, email: str) -> str:
        response = self._call(
            self._http.post,
            f"/api/master/user/{realm}/users",
            headers=self._auth(),
            json={"username": username, "email": email, "enabled": True, "realm": realm},
        )
        if response.status_code == 409:
            existing = self.find_user(realm, username)
            if existing:
                return existing
        if response.status_code not in (200, 201):
            raise InvalidSpec(
                f"OpenRemote refused user {username} in {realm}: "
                f"{response.status_code} {response.text[:200]}"
            )
        return str(response.json()["id"])

    def set_roles(self, realm: str, user_id: str, roles: list[str]) -> None:
        response = self._call(
            self._http.put,
            f"/api/master/user/{realm}/userRoles/{user_id}/openremote",
            headers=self._auth(),
            json=roles,
        )
        if response.status_code not in (200, 204):
            raise InvalidSpec(f"OpenRemote refused roles for {user_id}: {response.status_code}")

    def set_realm_logo(self, realm: str, url: str) -> None:
        """The realm's logo in the Manager UI's configuration (manager_config: `realms.<realm>
        .logo` and `.logoMobile`). One document for all realms, and OpenRemote offers no
        version to write it under: the operator's read-change-write goes one at a time (two
        Tenants' logos at once lost one of them), and reads the document back, so a write of
        someone else's in between is seen and retried, never a silent loss."""
        for _ in range(3):
            with _MANAGER_CONFIG:
                config = self._manager_config()
                entry = config.setdefault("realms", {}).setdefault(realm, {})
                if entry.get("logo") == url and entry.get("logoMobile") == url:
                    return
                entry["logo"] = entry["logoMobile"] = url
                response = self._call(
                    self._http.put,
                    "/api/master/configuration/manager",
                    headers=self._auth(),
                    json=config,
                )
                if response.status_code not in (200, 204):
                    raise Recoverable(
                        f"OpenRemote refused the logo of realm {realm}: {response.status_code}"
                    )
                shown = (self._manager_config().get("realms") or {}).get(realm) or {}
            if shown.get("logo") == url and shown.get("logoMobile") == url:
                return
        raise Recoverable(f"the logo of realm {realm} was overwritten by another writer; retrying")

    def _manager_config(self) -> dict[str, Any]:
        got = self._call(self._http.get, "/api/master/configuration/manager", headers=self._auth())
        return dict(got.json()) if got.status_code == 200 and got.content else {}
