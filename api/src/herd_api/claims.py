"""Signup claims: uniqueness by construction, without scanning Tenants.

A claim is a ConfigMap in the tenants namespace named after the hash of what it claims (an
admin email, an Idempotency-Key). Creating an object is atomic in the API server, so of any
number of concurrent signups for one email exactly one creates its claim; the others find it.
Each request reads and writes only objects it can name, so its cost does not grow with the
number of Tenants.

A claim holds the slug it was made for (and, for a key, the request's hash). Once the Tenant
exists the claim is owned by it, so deleting the Tenant lets the garbage collector remove the
claim. A claim whose Tenant never came (the API died in between) or is gone is stale and may
be taken over: deleted under its resourceVersion, so two takers cannot both win, and made anew.

Used verification links (UsedLinks) are claims too, kept until the link expires.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from herd_api.kubeapi import KubeApi
from herd_api.tenants import digest
from herd_core.constants import API_VERSION

EMAIL, KEY = "email", "key"
log = logging.getLogger("herd.api.claims")
MANAGED_BY = {"app.kubernetes.io/managed-by": "herd-api"}


def claim_name(kind: str, value: str) -> str:
    return f"signup-{kind}-{digest(value)}"


@dataclass
class Claim:
    name: str
    slug: str
    request: str | None
    owner_uid: str | None
    created: dt.datetime
    resource_version: str

    @classmethod
    def of(cls, cm: dict[str, Any]) -> Claim:
        data, meta = cm.get("data") or {}, cm["metadata"]
        owners = meta.get("ownerReferences") or []
        return cls(
            name=meta["name"],
            slug=data.get("slug", ""),
            request=data.get("request"),
            owner_uid=owners[0]["uid"] if owners else None,
            created=dt.datetime.fromisoformat(meta["creationTimestamp"]),
            resource_version=meta["resourceVersion"],
        )


class Claims:
    def __init__(self, namespace: str, ttl: float, kube: KubeApi) -> None:
        self.namespace = namespace
        self.ttl = ttl  # seconds an unowned claim waits for its Tenant before it is stale
        self.kube = kube
        self.path = f"/api/v1/namespaces/{namespace}/configmaps"
        # Hand-overs under way (own_later): held here, as the loop keeps only weak references.
        self._background: set[asyncio.Task[None]] = set()
        self.links = UsedLinks(self)

    def _body(
        self, name: str, slug: str, request: str | None, owner: dict[str, Any] | None
    ) -> dict[str, Any]:
        data = {"slug": slug, **({"request": request} if request else {})}
        metadata: dict[str, Any] = {"name": name, "labels": MANAGED_BY}
        if owner:
            metadata["ownerReferences"] = [owner_reference(owner)]
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}

    async def get(self, name: str) -> Claim | None:
        found = await self.kube.get(f"{self.path}/{name}")
        return None if found is None else Claim.of(found)

    async def create(
        self,
        name: str,
        slug: str,
        request: str | None = None,
        owner: dict[str, Any] | None = None,
    ) -> Claim | None:
        """Make the claim; None when it is made, else the claim someone else holds."""
        try:
            await self.kube.create(self.path, self._body(name, slug, request, owner))
            return None
        except ApiException as err:
            if err.status != 409:
                raise
        held = await self.get(name)
        if held is None:  # released a moment ago: try once more
            return await self.create(name, slug, request, owner)
        return held

    async def take_over(self, held: Claim, slug: str, request: str | None = None) -> bool:
        """Replace a stale claim; False when another request changed it first.

        Delete under its resourceVersion, then create anew: the new claim's age starts now.
        An update would keep the old creationTimestamp, and the next request would find the
        claim just taken stale as well and take it too (two Tenants for one email)."""
        try:
            if not await self.kube.delete(f"{self.path}/{held.name}", held.resource_version):
                return False
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        # A new signup may create the claim between the two calls; then it is theirs.
        try:
            await self.kube.create(self.path, self._body(held.name, slug, request, None))
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    async def own(self, name: str, tenant: dict[str, Any]) -> None:
        """Hand the claim to its Tenant: deleting the Tenant deletes the claim."""
        await self.kube.merge_patch(
            f"{self.path}/{name}", {"metadata": {"ownerReferences": [owner_reference(tenant)]}}
        )

    def own_later(self, name: str, tenant: dict[str, Any]) -> None:
        """`own`, off the request's path: the signup is answered a round trip sooner. If the
        API dies first, the claim stays unowned: it still holds while its Tenant exists,
        and is stale (taken over) once the Tenant is gone and the claim older than its TTL;
        only its removal with the Tenant is lost."""

        async def run() -> None:
            try:
                await self.own(name, tenant)
            except Exception:
                log.exception("could not hand claim %s to its Tenant", name)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def release(self, name: str, slug: str) -> None:
        """Drop a claim this signup made (it failed), never someone else's."""
        current = await self.get(name)
        if current is None or current.slug != slug:
            return
        try:
            await self.kube.delete(f"{self.path}/{name}", current.resource_version)
        except ApiException as err:
            if err.status != 409:
                raise

    def stale(self, held: Claim, tenant: dict[str, Any] | None, email: str) -> bool:
        """Whether a claim for another slug no longer stands for a signup."""
        if tenant is not None and (tenant.get("spec") or {}).get("adminEmail") == email:
            return False  # its Tenant exists and is this email's
        if held.owner_uid is not None:
            return True  # its Tenant is gone (the collector will follow) or was replaced
        age = (dt.datetime.now(dt.UTC) - held.created).total_seconds()
        return age > self.ttl  # its signup never created the Tenant


class UsedLinks:
    """Verification links that have made their Tenant, until they expire: a link is used
    once (before: after its Tenant was deleted, the same link made it again, with its
    Cognito user and welcome email, for the rest of its day).

    One ConfigMap per expiry (links expire on a step, herd_api.signuptokens), named after
    it and holding the digests of the links used that expire then: named, never listed,
    and as few as the steps a link lives. Once its expiry has passed a ConfigMap is
    deleted, by name, by the next verification of any link."""

    def __init__(self, claims: Claims) -> None:
        self.kube, self.path = claims.kube, claims.path
        self._background = claims._background
        self._swept: int | None = None  # expiries up to here are deleted

    def _name(self, expires: int) -> str:
        return f"signup-links-{expires}"

    async def made(self, token: str, expires: int) -> str | None:
        """The slug the link has made, if it has been used."""
        found = await self.kube.get(f"{self.path}/{self._name(expires)}")
        slug = ((found or {}).get("data") or {}).get(digest(token))
        return str(slug) if slug else None

    async def use(self, token: str, expires: int, slug: str) -> None:
        """Record that the link has made `slug`'s Tenant."""
        name, data = self._name(expires), {digest(token): slug}
        for _ in range(3):  # a ConfigMap deleted, or made, between two calls
            try:
                await self.kube.merge_patch(f"{self.path}/{name}", {"data": data})
                return
            except ApiException as err:
                if err.status != 404:
                    raise
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": MANAGED_BY},
                "data": data,
            }
            try:
                await self.kube.create(self.path, body)
                return
            except ApiException as err:
                if err.status != 409:
                    raise
        raise RuntimeError(f"could not record the use of a link in {name}")

    def sweep_later(self, now: float, step: int, ttl: int) -> None:
        """Delete the ConfigMaps of expiries past since the last sweep (since a link's
        lifetime ago, the first time), off the request's path."""
        start = self._swept if self._swept is not None else int(now) - ttl - step
        first = (start // step + 1) * step
        # A step past their expiry: a replica whose clock runs ahead deletes nothing early.
        due = list(range(first, int(now) - step, step))
        if not due:
            return
        self._swept = due[-1]

        async def run() -> None:
            for expires in due:
                try:
                    await self.kube.delete(f"{self.path}/{self._name(expires)}")
                except Exception:
                    log.exception("could not delete the used links expiring at %s", expires)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def owner_reference(tenant: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": tenant.get("apiVersion", API_VERSION),
        "kind": "Tenant",
        "name": tenant["metadata"]["name"],
        "uid": tenant["metadata"]["uid"],
    }
